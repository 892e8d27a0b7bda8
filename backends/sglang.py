"""SGLang's server: `python3 -m sglang.launch_server --model-path MODEL ...` (SGLang 0.5.x).

Every flag below was read from SGLang's own source (sgl-project/sglang, 2026):
- python/sglang/srt/server_args.py (`ServerArgs`; a field `foo_bar` is the flag
  `--foo-bar`, booleans are store-true): `--model-path --tokenizer-path --revision
  --trust-remote-code --context-length --dtype --quantization --kv-cache-dtype
  --load-format --mem-fraction-static --max-running-requests --max-queued-requests
  --max-total-tokens --chunked-prefill-size --max-prefill-tokens --schedule-policy
  --schedule-conservativeness --page-size --disable-radix-cache --disable-overlap-schedule
  --enable-mixed-chunk --tp-size --pp-size --dp-size --nnodes --node-rank --dist-init-addr
  --device --base-gpu-id --random-seed --watchdog-timeout --host --port
  --skip-server-warmup --api-key --served-model-name --chat-template
  --enable-cache-report --reasoning-parser --tool-call-parser
  --default-chat-template-kwargs --sampling-defaults --allow-auto-truncate
  --stream-interval --log-level --log-requests --enable-metrics`.
  `--kv-cache-dtype` takes auto, fp8_e5m2, fp8_e4m3, bf16/bfloat16, ... but not `fp8`.
  `--chunked-prefill-size` caps one prefill chunk and `--max-prefill-tokens` one prefill
  batch; neither is vLLM's per-step budget, so `resources.max_num_batched_tokens` is refused.
- python/sglang/launch_server.py: `python -m sglang.launch_server` is still supported
  (it warns that `sglang serve` from python/sglang/cli/main.py is the recommended entry
  point). llmctl runs the module form: it works on every 0.5.x, and argv[0] is the
  Python of the env that holds SGLang (runtime.venv / conda_env), found like any
  executable by llmdeploy_cli.engine_env.
- python/sglang/srt/utils (`add_api_key_middleware`): the key comes only from
  `--api-key`; `/health*` and `/metrics` skip the key check. SGLang reads no key
  variable, so the key is a Secret in argv (visible in /proc to the same user).
- `SGLANG_USE_MODELSCOPE` is read with `get_bool_env_var` (true/1).
- python/sglang/srt/entrypoints/http_server.py: `GET /health` answers 503 while the
  server is starting (warm-up) and while it shuts down, 200 when it serves.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Literal

from llmctl_backends.flag_readers import reader_path
from pydantic import BaseModel, ConfigDict, Field

from llmdeploy_cli.backend import (
    COMMON_KEYS,
    Backend,
    Plan,
    RenderContext,
    StopPlan,
    flag,
)
from llmdeploy_cli.capabilities import (
    HF_OFFLINE,
    CardLimits,
    ContainerSpec,
    ContextLimit,
    FlagSource,
    HubVars,
    ModelFormat,
    Recipe,
    Remedies,
    Remedy,
    Task,
)
from llmdeploy_cli.engine_env import executable_for_argv
from llmdeploy_cli.errors import ProfileIssue
from llmdeploy_cli.memory_rules import (
    FP8_AT_LOAD,
    PYTORCH_BASE,
    BaseMemory,
    Budget,
    BudgetInputs,
    FractionOfTotal,
    whole_blocks,
)
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    pass

MODULE = "sglang.launch_server"


class SglangOptions(BaseModel):
    """SGLang-only keys (profile `options:`). Unset keys render nothing: SGLang's default."""

    model_config = ConfigDict(extra="forbid")

    # memory and scheduling
    chunked_prefill_size: int | None = Field(
        None, ge=-1, description="--chunked-prefill-size: tokens per prefill chunk (-1: off)"
    )
    max_prefill_tokens: int | None = Field(
        None, gt=0, description="--max-prefill-tokens: tokens in one prefill batch"
    )
    max_total_tokens: int | None = Field(
        None, gt=0, description="--max-total-tokens: KV pool size in tokens"
    )
    max_queued_requests: int | None = Field(None, gt=0, description="--max-queued-requests")
    page_size: int | None = Field(None, gt=0, description="--page-size (tokens)")
    schedule_policy: (
        Literal["lpm", "random", "fcfs", "dfs-weight", "lof", "priority", "routing-key"] | None
    ) = Field(None, description="--schedule-policy")
    schedule_conservativeness: float | None = Field(
        None, gt=0, description="--schedule-conservativeness"
    )
    disable_radix_cache: bool = Field(False, description="--disable-radix-cache")
    disable_overlap_schedule: bool = Field(False, description="--disable-overlap-schedule")
    enable_mixed_chunk: bool = Field(False, description="--enable-mixed-chunk")
    # model loading
    load_format: str | None = Field(None, description="--load-format")
    random_seed: int | None = Field(None, description="--random-seed")
    # parallelism, multi-node, devices
    dp_size: int | None = Field(None, ge=1, description="--dp-size")
    nnodes: int | None = Field(None, ge=1, description="--nnodes")
    node_rank: int | None = Field(None, ge=0, description="--node-rank")
    dist_init_addr: str | None = Field(None, description="--dist-init-addr HOST:PORT")
    base_gpu_id: int | None = Field(None, ge=0, description="--base-gpu-id")
    # serving
    skip_server_warmup: bool = Field(False, description="--skip-server-warmup")
    watchdog_timeout: float | None = Field(None, gt=0, description="--watchdog-timeout (s)")
    default_chat_template_kwargs: dict | None = Field(
        None, description='--default-chat-template-kwargs (JSON), e.g. {"enable_thinking": false}'
    )
    sampling_defaults: Literal["openai", "model"] | None = Field(
        None, description="--sampling-defaults"
    )
    allow_auto_truncate: bool = Field(False, description="--allow-auto-truncate")
    enable_cache_report: bool = Field(False, description="--enable-cache-report")
    stream_interval: int | None = Field(None, gt=0, description="--stream-interval (tokens)")
    # logging and metrics
    log_level: str | None = Field(None, description="--log-level")
    log_requests: bool = Field(False, description="--log-requests")
    enable_metrics: bool = Field(False, description="--enable-metrics (Prometheus /metrics)")


# -- memory (the `memory` capability; arithmetic in llmdeploy_cli/memory_rules.py) ----------
# mem_fraction_static is a fraction of the card's TOTAL memory for the weights and the KV
# pool; activations live outside it. Unset, this plan assumes 0.88 (docs/models.md).
SGLANG_DEFAULT_FRACTION = 0.88


class SglangMemory(FractionOfTotal):
    def budget(self, b: BudgetInputs) -> Budget:
        frac = b.options.get("mem_fraction_static") or b.gpu_memory_utilization
        frac = frac or SGLANG_DEFAULT_FRACTION
        budget = int(frac * b.gpu_mem_bytes)
        kv = budget - b.weights_per_gpu
        tokens = whole_blocks(kv, b.kv_bytes_per_token, 1)
        return Budget(
            budget,
            f"mem_fraction_static {frac} x total memory holds weights + KV",
            kv,
            tokens,
            setting={"mem_fraction_static": frac},
        )


SGLANG_MEMORY = SglangMemory(
    BaseMemory(
        PYTORCH_BASE,
        "estimate: at least python + torch + transformers imported (measured here, CPU "
        "build); the CUDA build, the scheduler and detokenizer processes add more",
    ),
    # python/sglang/srt/layers/quantization/fp8.py (from vLLM's): a 16-bit checkpoint with
    # --quantization fp8 is quantized to fp8 while loading.
    load_quant={"fp8": FP8_AT_LOAD},
)

# What plan and doctor may suggest (keys in `supports`; SGLang's --kv-cache-dtype choices
# have fp8_e4m3, not fp8 — see check()).
SGLANG_REMEDIES = Remedies(
    more_gpus=Remedy("resources.tensor_parallel"),
    shorter_context=Remedy("resources.max_model_len"),
    memory_fraction=Remedy("resources.gpu_memory_utilization"),
    kv_cache_dtype=Remedy(
        "resources.kv_cache_dtype", "fp8_e4m3", "halves the KV bytes per token (small quality cost)"
    ),
    quantization=Remedy(
        "model.quantization",
        "fp8",
        "SGLang quantizes 16-bit weights to fp8 while loading: about half the weight memory",
    ),
    fewer_seqs=Remedy("resources.max_num_seqs"),
)

# python/sglang/srt/configs/model_config.py _derive_context_length: a --context-length above
# the derived one raises unless SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN is set.
# python/sglang/srt/layers/quantization/fp8.py Fp8Config.get_min_capability: 80 (the other
# methods' minimums are not declared here: not checked).
SGLANG_CARDS = CardLimits(
    quantization={"fp8": (8, 0)},
    source="python/sglang/srt/layers/quantization/fp8.py get_min_capability",
)

SGLANG_CONTEXT = ContextLimit(
    refuses=True,
    override_env="SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN",
    source="python/sglang/srt/configs/model_config.py _derive_context_length",
)


class SglangBackend(Backend):
    name = "sglang"
    summary = "SGLang server (NVIDIA/AMD GPUs; RadixAttention prefix cache)"
    default_port = 30000
    executable = "python3"  # argv: python3 -m sglang.launch_server (see module docstring)
    distribution = "sglang"
    newest_known = "0.5.19"
    # sglang/srt/server_args.py's names for what common keys set.
    option_keys = {
        "mem_fraction_static": "resources.gpu_memory_utilization",
        "context_length": "resources.max_model_len",
        "max_running_requests": "resources.max_num_seqs",
        "tp_size": "resources.tensor_parallel",
        "tensor_parallel_size": "resources.tensor_parallel",
        "pp_size": "resources.pipeline_parallel",
        "pipeline_parallel_size": "resources.pipeline_parallel",
        "served_model_name": "model.served_name",
        "api_key": "server.api_key_env",
    }
    Options = SglangOptions
    memory = SGLANG_MEMORY
    remedies = SGLANG_REMEDIES
    context_limit = SGLANG_CONTEXT
    card_limits = SGLANG_CARDS
    # Every common key but one: SGLang has no equivalent (see chunked_prefill_size).
    supports = COMMON_KEYS - {"resources.max_num_batched_tokens"}
    refused_hints = {
        "resources.max_num_batched_tokens": "SGLang has no per-step token budget like "
        "vLLM's; remove it and use options.chunked_prefill_size or options.max_prefill_tokens"
    }
    install_hint = (
        "python -m venv ~/.venvs/sglang && ~/.venvs/sglang/bin/pip install 'sglang[all]' "
        "(then set runtime.venv: ~/.venvs/sglang in the profile)"
    )
    timeouts = (1800.0, 600.0, 300.0)

    # -- declared capabilities (llmdeploy_cli/capabilities.py) ----------------------------
    model_formats = frozenset({ModelFormat.HF_FOLDER})
    # python/sglang/srt/entrypoints/http_server.py: chat, completions; /v1/embeddings
    # and /v1/rerank for models launched with --is-embedding.
    tasks = frozenset({Task.CHAT, Task.COMPLETIONS, Task.EMBEDDINGS, Task.RERANK})
    runs_on_cpu = False  # llmctl installs and plans the CUDA build only
    container = ContainerSpec("lmsysorg/sglang:v{version}", "/root/.cache/huggingface", "HF_HOME")
    # The install checks for `executable` (python3, as SGLang's docs run
    # `python3 -m sglang.launch_server`): every venv has it.
    install = Recipe(
        default_version="0.5.19",
        devices=("cuda",),
        packages=("sglang[srt]=={version}",),
        torch={"cuda": None},
        prefer_uv=True,
    )
    # python/sglang/srt/environ.py: SGLANG_USE_MODELSCOPE is an EnvBool (true/1).
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope={"SGLANG_USE_MODELSCOPE": "true"},
        cache_env="HF_HOME",
        endpoint_env="HF_ENDPOINT",
    )
    flag_source = FlagSource("sglang", reader_file=reader_path("sglang"))

    # -- static side ----------------------------------------------------------------------
    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = super().check(profile, version)
        if profile.resources.kv_cache_dtype == "fp8":
            issues.append(
                profile.issue(
                    ("resources", "kv_cache_dtype"),
                    "SGLang has no kv cache dtype 'fp8'",
                    hint="use fp8_e4m3 or fp8_e5m2",
                )
            )
        return issues

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: SglangOptions = self.options(profile)
        m, r = profile.model, profile.resources
        set_keys = profile.set_keys()
        warnings: list[str] = []

        argv = [executable_for_argv(self, profile), "-m", MODULE]
        flag(argv, "--model-path", self.model_arg(profile))
        flag(argv, "--host", profile.server.host)
        flag(argv, "--port", self.port(profile, ctx))
        flag(argv, "--served-model-name", profile.served_name)
        flag(argv, "--revision", m.revision)
        flag(argv, "--tokenizer-path", _expand(m.tokenizer))
        flag(argv, "--dtype", m.dtype)
        flag(argv, "--trust-remote-code", m.trust_remote_code)
        flag(argv, "--quantization", m.quantization)
        flag(argv, "--chat-template", _expand(m.chat_template))
        flag(argv, "--reasoning-parser", m.reasoning_parser)
        flag(argv, "--tool-call-parser", m.tool_call_parser)
        if r.device in ("cuda", "cpu"):
            flag(argv, "--device", r.device)
        # A static fraction for weights + KV pool, not vLLM's total-memory budget.
        flag(argv, "--mem-fraction-static", r.gpu_memory_utilization)
        flag(argv, "--context-length", r.max_model_len)
        flag(argv, "--max-running-requests", r.max_num_seqs)
        if "resources.tensor_parallel" in set_keys:
            flag(argv, "--tp-size", r.tensor_parallel)
        if "resources.pipeline_parallel" in set_keys:
            flag(argv, "--pp-size", r.pipeline_parallel)
        flag(argv, "--kv-cache-dtype", r.kv_cache_dtype)
        key = ctx.secret(profile.server.api_key_env)
        if key is not None:
            argv += ["--api-key", key]
            warnings.append(
                "sglang: SGLang takes the API key only as --api-key, so it is visible in "
                "/proc/<pid>/cmdline to processes of the same user (shown here as ***)"
            )
        self._options_argv(argv, opts)
        argv += profile.extra_args

        rt = profile.runtime
        if not (rt.venv or rt.conda_env or rt.executable):
            warnings.append(
                "sglang: runs as `python3 -m sglang.launch_server` with the python3 on PATH; "
                "set runtime.venv (or conda_env) to the environment that has SGLang"
            )
        env = self.base_env(profile, ctx)  # with hub's SGLANG_USE_MODELSCOPE
        return self.server_plan(profile, ctx, argv, env, warnings)

    def _options_argv(self, argv: list, o: SglangOptions) -> None:
        flag(argv, "--chunked-prefill-size", o.chunked_prefill_size)
        flag(argv, "--max-prefill-tokens", o.max_prefill_tokens)
        flag(argv, "--max-total-tokens", o.max_total_tokens)
        flag(argv, "--max-queued-requests", o.max_queued_requests)
        flag(argv, "--page-size", o.page_size)
        flag(argv, "--schedule-policy", o.schedule_policy)
        flag(argv, "--schedule-conservativeness", o.schedule_conservativeness)
        flag(argv, "--disable-radix-cache", o.disable_radix_cache)
        flag(argv, "--disable-overlap-schedule", o.disable_overlap_schedule)
        flag(argv, "--enable-mixed-chunk", o.enable_mixed_chunk)
        flag(argv, "--load-format", o.load_format)
        flag(argv, "--random-seed", o.random_seed)
        flag(argv, "--dp-size", o.dp_size)
        flag(argv, "--nnodes", o.nnodes)
        flag(argv, "--node-rank", o.node_rank)
        flag(argv, "--dist-init-addr", o.dist_init_addr)
        flag(argv, "--base-gpu-id", o.base_gpu_id)
        flag(argv, "--skip-server-warmup", o.skip_server_warmup)
        flag(argv, "--watchdog-timeout", o.watchdog_timeout)
        if o.default_chat_template_kwargs is not None:
            flag(
                argv,
                "--default-chat-template-kwargs",
                json.dumps(o.default_chat_template_kwargs, separators=(",", ":"), sort_keys=True),
            )
        flag(argv, "--sampling-defaults", o.sampling_defaults)
        flag(argv, "--allow-auto-truncate", o.allow_auto_truncate)
        flag(argv, "--enable-cache-report", o.enable_cache_report)
        flag(argv, "--stream-interval", o.stream_interval)
        flag(argv, "--log-level", o.log_level)
        flag(argv, "--log-requests", o.log_requests)
        flag(argv, "--enable-metrics", o.enable_metrics)

    # -- runtime side ---------------------------------------------------------------------
    def stop_plan(self, profile: Profile) -> StopPlan:
        # launch_server kills its scheduler/detokenizer children on the way out.
        return StopPlan(grace_s=30.0)


def _expand(path: str | None) -> str | None:
    return None if path is None else os.path.expanduser(path)
