"""llama.cpp's HTTP server, as `llama-server` or in-process through the `xllamacpp` wheel.

`options.runtime` picks what runs one GGUF file:
- `server` (default): the C++ binary, `llama-server --model X.gguf --host --port ...`;
- `xllamacpp`: `python llamacpp_runner.py` with the same flags (backends/llamacpp_runner.py),
  which runs the same C++ server inside Python from a prebuilt wheel (no compile);
- `llama-cpp-python`: `python -m llama_cpp.server --model X.gguf --n_ctx ...` (its own
  Python server around the C API; it compiles llama.cpp at install, ~15 minutes).

Flags read from llama.cpp's source (ggml-org/llama.cpp, tools/server/README.md, generated
from common/arg.cpp): `-m/--model`, `-hf/--hf-repo`, `-a/--alias` (comma-separated names
the API answers to and /v1/models lists), `--host` (default 127.0.0.1), `--port` (default
8080 in older builds, 9931 now: llmctl always renders it), `-c/--ctx-size` (0 = the
model's; split evenly across slots unless the KV cache is unified), `-np/--parallel`
(slots; -1 auto), `-ngl/--n-gpu-layers` (a number, `auto` or `all`), `-t/--threads`,
`-tb/--threads-batch`, `--threads-http`, `-b/--batch-size`, `-ub/--ubatch-size`,
`-ctk/--cache-type-k`, `-ctv/--cache-type-v` (f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl,
q5_0, q5_1), `-fa/--flash-attn on|off|auto`, `-fit/--fit on|off`, `--embedding`,
`--rerank`, `--pooling none|mean|cls|last|rank`, `--chat-template-file`, `--jinja`/
`--no-jinja`, `--reasoning-format`, `--metrics`, `--no-webui`, `-sm/--split-mode`,
`-ts/--tensor-split`, `-mg/--main-gpu`, `--offline` (env LLAMA_ARG_OFFLINE).
The key: `--api-key KEY` or the variable LLAMA_API_KEY (llmctl uses the variable).
`GET /health` (no key needed) answers 503 `{"error": {"message": "Loading model"}}` while
the model loads (the port is open by then: that is LOADING, not DOWN) and 200 when ready.

llama-cpp-python (abetlen/llama-cpp-python, llama_cpp/server/settings.py and cli.py):
every settings field is a flag spelled with underscores (`--model --model_alias --host
--port --n_ctx --n_gpu_layers` (-1 = all) `--n_threads --n_threads_batch --n_batch
--embedding true --flash_attn true --chat_format`); `api_key` is read from the API_KEY
variable by pydantic-settings; it has no /health, and its port opens after the load.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmdeploy_cli.backend import (
    Backend,
    Endpoint,
    Plan,
    RenderContext,
    StopPlan,
    flag,
)
from llmdeploy_cli.capabilities import (
    HF_OFFLINE,
    NOT_SUPPORTED,
    ContainerSpec,
    HubVars,
    ModelFormat,
    Recipe,
    Remedies,
    Remedy,
    Task,
)
from llmdeploy_cli.engine_env import env_prefix, executable_for_argv, for_container
from llmdeploy_cli.errors import ProfileIssue
from llmdeploy_cli.memory_rules import RUNTIME_RESERVE, BaseMemory, MiB, NoPool, Sizing
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    pass

RUNNER = Path(__file__).resolve().with_name("llamacpp_runner.py")
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
# What each runtime can do beyond the model, host, port and alias.
RUNNER_OPTIONS = frozenset(
    {
        "n_gpu_layers",
        "threads",
        "threads_batch",
        "threads_http",
        "ubatch_size",
        "flash_attn",
        "fit",
        "embedding",
        "pooling",
        "jinja",
        "metrics",
        "webui",
    }
)


class LlamacppMemory(NoPool):
    """No pre-allocated pool: the KV of the context (-c) plus the layers offloaded (-ngl)."""

    def setting_for_budget(
        self, plan, budget_bytes: int, card_total: int, free: int, layers: int | None = None
    ) -> dict | None:
        """The plan's context, and every layer on the GPU when weights + KV + the CUDA
        runtime fit the budget and the free memory; otherwise as many whole layers as fit
        (the rest run on the CPU) when the layer count is known; None when none does."""
        kv = int(plan.max_model_len * (plan.max_num_seqs or 1) * plan.kv_bytes_per_token)
        room = min(budget_bytes, free) - RUNTIME_RESERVE - kv
        out: dict = {"resources.max_model_len": plan.max_model_len}
        if room >= plan.weights_per_gpu:
            return {**out, "options.n_gpu_layers": "all"}
        if not layers or room <= 0:
            return None
        n = int(room // (plan.weights_per_gpu / layers))
        return {**out, "options.n_gpu_layers": n} if n > 0 else None


LCP_OPTIONS = frozenset({"n_gpu_layers", "threads", "threads_batch", "flash_attn", "embedding"})


class LlamacppOptions(BaseModel):
    """llama.cpp-only keys (profile `options:`). Unset keys render nothing."""

    model_config = ConfigDict(extra="forbid")

    runtime: Literal["server", "xllamacpp", "llama-cpp-python"] = Field(
        "server", description="llama-server binary, the xllamacpp wheel, or llama-cpp-python"
    )
    n_gpu_layers: int | Literal["auto", "all"] | None = Field(
        None, description="--n-gpu-layers: layers offloaded to the GPU (0: CPU only)"
    )
    threads: int | None = Field(None, ge=1, description="--threads (generation)")
    threads_batch: int | None = Field(None, ge=1, description="--threads-batch (prompt)")
    threads_http: int | None = Field(None, ge=1, description="--threads-http")
    ubatch_size: int | None = Field(None, ge=1, description="--ubatch-size (physical batch)")
    flash_attn: Literal["on", "off", "auto"] | None = Field(None, description="--flash-attn")
    fit: Literal["on", "off"] | None = Field(
        None, description="--fit: shrink unset settings to fit device memory (newer builds)"
    )
    embedding: bool = Field(False, description="--embedding (implied by model.task embedding)")
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = Field(
        None, description="--pooling for embeddings"
    )
    jinja: bool | None = Field(None, description="--jinja / --no-jinja chat templates")
    reasoning_format: Literal["none", "deepseek", "deepseek-legacy", "auto"] | None = Field(
        None, description="--reasoning-format"
    )
    metrics: bool = Field(False, description="--metrics: Prometheus /metrics")
    webui: bool | None = Field(None, description="false: --no-webui")
    split_mode: Literal["none", "layer", "row"] | None = Field(None, description="--split-mode")
    tensor_split: list[float] | None = Field(None, description="--tensor-split 3,1")
    main_gpu: int | None = Field(None, ge=0, description="--main-gpu")
    chat_format: str | None = Field(
        None, description="llama-cpp-python --chat_format (chatml, llama-3, ...)"
    )


class LlamacppBackend(Backend):
    name = "llamacpp"
    summary = "llama.cpp server for GGUF files (llama-server, xllamacpp wheel, llama-cpp-python)"
    default_port = 8080
    newest_known = "2026.10.11549"  # xllamacpp's version scheme; pin runtime.engine_version
    # llama-server's names for what common keys set.
    option_keys = {
        "ctx_size": "resources.max_model_len",
        "n_ctx": "resources.max_model_len",
        "parallel": "resources.max_num_seqs",
        "n_parallel": "resources.max_num_seqs",
        "batch_size": "resources.max_num_batched_tokens",
        "n_batch": "resources.max_num_batched_tokens",
        "cache_type_k": "resources.kv_cache_dtype",
        "cache_type_v": "resources.kv_cache_dtype",
        "alias": "model.served_name",
        "api_key": "server.api_key_env",
    }
    Options = LlamacppOptions
    memory = LlamacppMemory(
        BaseMemory(
            40 * MiB,
            "measured: xllamacpp runner on CPU with a 0.4 MB GGUF, RSS after one chat "
            "request; the llama-server binary is not measured",
        ),
        Sizing.LAYERS,
    )
    # Context (-c), slots (--parallel) and a q8_0 KV cache (--cache-type-k/v); plan keeps
    # only those validate takes for the profile (llama-cpp-python refuses the last two).
    remedies = Remedies(
        shorter_context=Remedy("resources.max_model_len"),
        kv_cache_dtype=Remedy(
            "resources.kv_cache_dtype", "q8_0", "halves the KV bytes per token (f16 -> q8_0)"
        ),
        fewer_seqs=Remedy("resources.max_num_seqs"),
    )
    supports = frozenset(
        {
            "model.served_name",
            "model.chat_template",
            "server.api_key_env",
            "resources.device",
            "resources.max_model_len",
            "resources.max_num_seqs",
            "resources.max_num_batched_tokens",
            "resources.kv_cache_dtype",
        }
    )
    needs_gguf = True  # preflight: model.source must be a .gguf file
    install_hint = (
        "download llama-server from llama.cpp's releases, or set options.runtime: xllamacpp "
        "and pip install xllamacpp"
    )
    # llama-server opens its port before loading (then /health 503); a big GGUF can take
    # minutes to read from disk.
    timeouts = (120.0, 900.0, 300.0)

    # -- declared capabilities (llmdeploy_cli/capabilities.py) ----------------------------
    model_formats = frozenset({ModelFormat.GGUF})
    # llama-server: chat, completions, /v1/embeddings (--embedding), /v1/rerank (--rerank)
    tasks = frozenset({Task.CHAT, Task.COMPLETIONS, Task.EMBEDDINGS, Task.RERANK})
    runs_on_cpu = True
    container = ContainerSpec(None, "/root/.cache/huggingface", "HF_HOME")  # no image
    # `llmctl engine install llamacpp`: the xllamacpp wheel (llama.cpp's server in-process,
    # run by llamacpp_runner.py with options.runtime: xllamacpp). Prebuilt: the CPU wheel from
    # the default index, the CUDA 12.8 one from xllamacpp's own index (its README:
    # `pip install xllamacpp --index-url https://xorbitsai.github.io/xllamacpp/whl/cu128`;
    # cu132 needs a CUDA 13.2 driver). No dependencies; the install checks bin/python3.
    install = Recipe(
        default_version="2026.10.11549",
        devices=("cpu", "cuda"),
        packages=("xllamacpp=={version}",),
        index_url={"cuda": "https://xorbitsai.github.io/xllamacpp/whl/cu128"},
        distribution="xllamacpp",
        executable="python3",
        notes=(
            "the CPU wheel is built without AVX-512/AMX (portable): build from source for those",
        ),
    )
    # LLAMA_ARG_OFFLINE is set too, for the llama-server runtime only.
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope=NOT_SUPPORTED,
        cache_env="HF_HOME",
        endpoint_env="HF_ENDPOINT",
    )
    flag_source = NOT_SUPPORTED  # a C++ server: no Python parser to read

    # The executable and the Python distribution depend on options.runtime. The core asks
    # the backend instance (preflight, engine_env) after resolving the profile, and
    # resolve always calls options() first: remember the runtime it saw.
    _runtime: str = "server"

    @property
    def executable(self) -> str:  # type: ignore[override]
        if self._runtime == "server":
            return "llama-server"
        return "python3" if self._env_named or for_container() else sys.executable

    @property
    def distribution(self) -> str | None:  # type: ignore[override]
        return {"xllamacpp": "xllamacpp", "llama-cpp-python": "llama_cpp_python"}.get(self._runtime)

    _env_named: bool = False

    def options(self, profile: Profile) -> LlamacppOptions:
        opts = super().options(profile)
        self._runtime = opts.runtime
        rt = profile.runtime
        # an env runs the runner: the profile's, or (no runtime section) the xllamacpp env
        # `llmctl engine install llamacpp` made
        self._env_named = bool(rt.venv or rt.conda_env) or (
            opts.runtime == "xllamacpp" and self._installed(profile) is not None
        )
        return opts

    def _installed(self, profile: Profile):
        from llmdeploy_cli.engines.store import for_profile

        rt = profile.runtime
        if rt.venv or rt.conda_env or rt.executable or for_container():
            return None
        return for_profile(self.name, "python3", profile.resources.device)

    # -- static side ----------------------------------------------------------------------
    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = super().check(profile, version)
        raw = profile.options or {}
        runtime = raw.get("runtime", "server")
        r = profile.resources
        if r.kv_cache_dtype is not None and r.kv_cache_dtype not in CACHE_TYPES:
            issues.append(
                profile.issue(
                    ("resources", "kv_cache_dtype"),
                    f"llama.cpp's KV cache types are {', '.join(CACHE_TYPES)}",
                )
            )
        if r.device == "cpu" and raw.get("n_gpu_layers") not in (None, 0):
            issues.append(
                profile.issue(
                    ("options", "n_gpu_layers"),
                    "resources.device: cpu renders --n-gpu-layers 0; this contradicts it",
                    hint="remove one of the two",
                )
            )
        if runtime != "server":
            allowed = RUNNER_OPTIONS if runtime == "xllamacpp" else LCP_OPTIONS
            for key in sorted(set(raw) - allowed - {"runtime", "chat_format"}):
                issues.append(
                    profile.issue(
                        ("options", key),
                        f"options.runtime {runtime} does not take this option",
                        hint=f"it takes: {', '.join(sorted(allowed))}",
                    )
                )
            if runtime == "xllamacpp" and "chat_format" in raw:
                issues.append(
                    profile.issue(
                        ("options", "chat_format"),
                        "chat_format is llama-cpp-python's; llama.cpp reads the GGUF's template",
                        hint="use model.chat_template for a template file",
                    )
                )
            if profile.model_path() is None and not _looks_local(profile.model.source):
                issues.append(
                    profile.issue(
                        ("model", "source"),
                        f"options.runtime {runtime} serves a local .gguf file only",
                        hint="download the file, or use runtime: server (llama-server -hf)",
                    )
                )
            if runtime == "llama-cpp-python":
                if profile.model.task == "rerank":
                    issues.append(
                        profile.issue(
                            ("model", "task"), "llama-cpp-python's server has no rerank endpoint"
                        )
                    )
                lcp_refused = ("resources.max_num_seqs", "resources.kv_cache_dtype")
                for key in (*lcp_refused, "model.chat_template"):
                    if key in profile.set_keys():
                        issues.append(
                            profile.issue(
                                tuple(key.split(".")),
                                "llama-cpp-python's server has no such setting",
                                hint="options.chat_format picks its built-in chat formats"
                                if key == "model.chat_template"
                                else None,
                            )
                        )
        elif raw.get("chat_format") is not None:
            issues.append(
                profile.issue(
                    ("options", "chat_format"),
                    "chat_format is llama-cpp-python's; llama-server reads the GGUF's template",
                    hint="use model.chat_template for a template file",
                )
            )
        if profile.extra_args and runtime == "xllamacpp":
            flags = _runner_flags()
            for a in profile.extra_args:
                if a.startswith("-") and a.split("=", 1)[0] not in flags:
                    issues.append(
                        profile.issue(
                            ("extra_args",),
                            f"the xllamacpp runner does not take {a}",
                            hint="it takes llama-server's flags that llmctl renders: "
                            + ", ".join(sorted(f for f in flags if f.startswith("--"))),
                        )
                    )
        return issues

    def endpoint(self, profile: Profile, ctx: RenderContext) -> Endpoint:
        ep = super().endpoint(profile, ctx)
        runtime = (profile.options or {}).get("runtime", "server")
        if runtime == "llama-cpp-python":
            # No /health: readiness polls /v1/models (the port opens after the load).
            return Endpoint(ep.base_url, ep.model, None, ep.api_key_env, ep.task)
        return ep

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: LlamacppOptions = self.options(profile)
        if opts.runtime == "llama-cpp-python":
            return self._build_lcp(profile, ctx, opts)
        m, r = profile.model, profile.resources
        warnings: list[str] = []
        if opts.runtime == "server":
            argv = [executable_for_argv(self, profile)]
        else:
            argv = [self._python(profile), str(RUNNER)]
        local = profile.model_path() is not None or _looks_local(m.source)
        if local:
            flag(argv, "--model", self.model_arg(profile))
        else:
            flag(argv, "--hf-repo", m.source)  # org/repo[:quant], downloaded by llama-server
        # Always: the API (and /v1/models) then answers to the profile's name.
        flag(argv, "--alias", profile.served_name)
        flag(argv, "--host", profile.server.host)
        flag(argv, "--port", self.port(profile, ctx))
        slots = r.max_num_seqs
        if r.max_model_len is not None:
            # --ctx-size is the whole KV cache, split evenly across --parallel slots:
            # give each slot the profile's context length.
            flag(argv, "--ctx-size", r.max_model_len * (slots or 1))
        flag(argv, "--parallel", slots)
        ngl = opts.n_gpu_layers
        if r.device == "cpu":
            ngl = 0
        flag(argv, "--n-gpu-layers", ngl)
        flag(argv, "--threads", opts.threads)
        flag(argv, "--threads-batch", opts.threads_batch)
        flag(argv, "--threads-http", opts.threads_http)
        flag(argv, "--batch-size", r.max_num_batched_tokens)
        flag(argv, "--ubatch-size", opts.ubatch_size)
        if r.kv_cache_dtype is not None:
            flag(argv, "--cache-type-k", r.kv_cache_dtype)
            flag(argv, "--cache-type-v", r.kv_cache_dtype)
        flag(argv, "--flash-attn", opts.flash_attn)
        flag(argv, "--fit", opts.fit)
        if m.task == "rerank":
            flag(argv, "--rerank", True)
        else:
            flag(argv, "--embedding", opts.embedding or m.task == "embedding")
        flag(argv, "--pooling", opts.pooling)
        flag(argv, "--chat-template-file", _expand(m.chat_template))
        if opts.jinja is not None:
            argv.append("--jinja" if opts.jinja else "--no-jinja")
        flag(argv, "--reasoning-format", opts.reasoning_format)
        flag(argv, "--metrics", opts.metrics)
        flag(argv, "--no-webui", opts.webui is False)
        flag(argv, "--split-mode", opts.split_mode)
        if opts.tensor_split:
            flag(argv, "--tensor-split", ",".join(_num(x) for x in opts.tensor_split))
        flag(argv, "--main-gpu", opts.main_gpu)
        argv += profile.extra_args
        if any(a == "--api-key" or a.startswith("--api-key=") for a in profile.extra_args):
            warnings.append(
                "llamacpp: --api-key in extra_args puts the key in the process list (/proc); "
                "set server.api_key_env instead (llmctl passes it as LLAMA_API_KEY)"
            )

        env = self.base_env(profile, ctx)
        if profile.offline and opts.runtime == "server":
            env["LLAMA_ARG_OFFLINE"] = "1"  # --offline: use the cache, never download
        key = ctx.secret(profile.server.api_key_env)
        if key is not None:
            env["LLAMA_API_KEY"] = key
        return self.server_plan(profile, ctx, argv, env, warnings)

    def _python(self, profile: Profile) -> str:
        """The Python that runs the runner: the profile's env, else llmctl's own."""
        if profile.runtime.executable or env_prefix(profile, self) is not None or for_container():
            return executable_for_argv(self, profile)
        return sys.executable

    def _build_lcp(self, profile: Profile, ctx: RenderContext, opts: LlamacppOptions) -> Plan:
        m, r = profile.model, profile.resources
        argv = [self._python(profile), "-m", "llama_cpp.server"]
        flag(argv, "--model", self.model_arg(profile))
        flag(argv, "--model_alias", profile.served_name)
        flag(argv, "--host", profile.server.host)
        flag(argv, "--port", self.port(profile, ctx))
        flag(argv, "--n_ctx", r.max_model_len)
        ngl = 0 if r.device == "cpu" else opts.n_gpu_layers
        if ngl == "all":
            ngl = -1  # llama-cpp-python: -1 offloads every layer
        if ngl == "auto":
            ngl = None
        flag(argv, "--n_gpu_layers", ngl)
        flag(argv, "--n_threads", opts.threads)
        flag(argv, "--n_threads_batch", opts.threads_batch)
        flag(argv, "--n_batch", r.max_num_batched_tokens)
        if opts.flash_attn is not None and opts.flash_attn != "auto":
            flag(argv, "--flash_attn", "true" if opts.flash_attn == "on" else "false")
        if opts.embedding or m.task == "embedding":
            flag(argv, "--embedding", "true")
        flag(argv, "--chat_format", opts.chat_format)
        argv += profile.extra_args
        env = self.base_env(profile, ctx)
        key = ctx.secret(profile.server.api_key_env)
        if key is not None:
            env["API_KEY"] = key  # pydantic-settings reads ServerSettings.api_key from it
        return self.server_plan(profile, ctx, argv, env)

    # -- runtime side ---------------------------------------------------------------------
    def stop_plan(self, profile: Profile) -> StopPlan:
        return StopPlan(grace_s=10.0)


def _looks_local(source: str) -> bool:
    s = os.path.expanduser(source)
    return s.endswith(".gguf") or s.startswith((".", "/", "~"))


def _expand(path: str | None) -> str | None:
    return None if path is None else os.path.expanduser(path)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _runner_flags() -> set[str]:
    """Every option string the xllamacpp runner's parser accepts."""
    from llmctl_backends import llamacpp_runner

    actions = llamacpp_runner.parser()._actions
    return {s for a in actions for s in a.option_strings} - {"-h", "--help"}
