"""Infinity, the embedding / rerank server: `infinity_emb v2 --model-id DIR ...` (0.0.78).

Every flag below was read from Infinity's own source (michaelfeil/infinity,
libs/infinity_emb/infinity_emb/cli.py `v2`, env.py and primitives.py):
- `--model-id --served-model-name --batch-size --revision --trust-remote-code/
  --no-trust-remote-code --engine torch|optimum|ctranslate2|neuron|debugengine
  --model-warmup/--no-model-warmup --vector-disk-cache/--no-vector-disk-cache
  --device auto|cpu|cuda|mps|tensorrt|xla --device-id --lengths-via-tokenize/--no-...
  --dtype float32|float16|bfloat16|int8|fp8|auto --embedding-dtype float32|int8|uint8|
  binary|ubinary --pooling-method mean|cls|auto --compile/--no-compile
  --bettertransformer/--no-bettertransformer --host --port --url-prefix --redirect-slash
  --log-level --permissive-cors/--no-permissive-cors --api-key --proxy-root-path`.
  Each option's default comes from an INFINITY_* variable (env.py `to_name`): the key is
  read from INFINITY_API_KEY, so llmctl never puts it in argv.
- defaults that matter: `--host 0.0.0.0` (llmctl always renders the host),
  `--trust-remote-code` *on* (llmctl always renders one of the pair, so the profile's
  `model.trust_remote_code: false` default holds), `--url-prefix ""`: the OpenAI routes
  (`/models`, `/embeddings`, `/rerank`) hang under the prefix, so without `--url-prefix /v1`
  `/v1/embeddings` is a 404. `GET /health` stays at the root, outside the prefix, and
  needs no key.
- the model loads in the FastAPI lifespan, before uvicorn accepts connections: the port
  refuses while loading (DOWN, like vLLM), then /health is 200 and /v1/models lists the
  served name.
- anonymous usage statistics are sent unless INFINITY_ANONYMOUS_USAGE_STATS is false or
  DO_NOT_TRACK=1: `offline: true` sets the former.
- pins: transformers 4.57 and numpy < 2, so it lives in its own environment
  (runtime.venv, or `engine:infinity` from `llmctl engine install infinity`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmdeploy_cli.backend import (
    Backend,
    Endpoint,
    Plan,
    RenderContext,
    StopPlan,
    flag,
    negatable_flag,
)
from llmdeploy_cli.capabilities import (
    HF_OFFLINE,
    NOT_SUPPORTED,
    ContainerSpec,
    FlagCommand,
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
from llmdeploy_cli.memory_rules import PYTORCH_BASE, BaseMemory, NoPool
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    pass

URL_PREFIX = "/v1"


class InfinityOptions(BaseModel):
    """Infinity-only keys (profile `options:`). Unset keys render nothing."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["torch", "optimum", "ctranslate2"] | None = Field(
        None, description="--engine: torch (default), optimum (ONNX), ctranslate2"
    )
    model_warmup: bool | None = Field(None, description="--[no-]model-warmup (default on)")
    vector_disk_cache: bool | None = Field(
        None, description="--[no-]vector-disk-cache: cache results in SQLite"
    )
    lengths_via_tokenize: bool | None = Field(
        None, description="--[no-]lengths-via-tokenize: usage counts real tokens"
    )
    compile: bool | None = Field(None, description="--[no-]compile: torch.compile")
    bettertransformer: bool | None = Field(None, description="--[no-]bettertransformer")
    embedding_dtype: Literal["float32", "int8", "uint8", "binary", "ubinary"] | None = Field(
        None, description="--embedding-dtype: quantize the returned vectors"
    )
    pooling_method: Literal["auto", "mean", "cls"] | None = Field(
        None, description="--pooling-method"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] | None = Field(
        None, description="--log-level"
    )
    permissive_cors: bool | None = Field(None, description="--[no-]permissive-cors")


class InfinityBackend(Backend):
    name = "infinity"
    summary = "Infinity embedding and rerank server (sentence-transformers models, CPU or GPU)"
    default_port = 7997
    executable = "infinity_emb"
    distribution = "infinity-emb"
    newest_known = "0.0.78"
    # infinity_emb v2's names for what common keys set.
    option_keys = {
        "batch_size": "resources.max_num_seqs",
        "served_model_name": "model.served_name",
        "api_key": "server.api_key_env",
    }
    Options = InfinityOptions
    memory = NoPool(
        BaseMemory(
            PYTORCH_BASE,
            "estimate: at least python + torch + transformers imported (measured here); "
            "infinity-emb is not installed here to measure",
        )
    )
    # Embeddings: no KV cache; the batch (--batch-size) is what a smaller setting saves.
    remedies = Remedies(fewer_seqs=Remedy("resources.max_num_seqs"))
    supports = frozenset(
        {
            "model.served_name",
            "model.revision",
            "model.dtype",
            "model.trust_remote_code",
            "server.api_key_env",
            "resources.device",
            "resources.max_num_seqs",
        }
    )
    install_hint = (
        "llmctl engine install infinity --device cpu   (or: python -m venv ~/.venvs/infinity && "
        "~/.venvs/infinity/bin/pip install torch 'infinity-emb[server,torch]')"
    )
    # The port opens only after the model is loaded (and warmed up).
    timeouts = (600.0, 120.0, 120.0)

    # -- declared capabilities (llmdeploy_cli/capabilities.py) ----------------------------
    model_formats = frozenset({ModelFormat.HF_FOLDER})
    tasks = frozenset({Task.EMBEDDINGS, Task.RERANK})
    runs_on_cpu = True
    container = ContainerSpec(None, "/root/.cache/huggingface", "HF_HOME")  # no image
    install = Recipe(
        default_version="0.0.78",
        devices=("cpu", "cuda"),
        packages=("infinity-emb[server,torch]=={version}",),
        torch={"cpu": "2.13.0", "cuda": None},  # the CPU torch of the project's .venv
        notes=("infinity pins transformers 4.57 and numpy < 2: it needs its own env",),
    )
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope=NOT_SUPPORTED,
        cache_env="HF_HOME",
        endpoint_env="HF_ENDPOINT",
    )
    # `infinity_emb v2`: the Typer app of infinity_emb.cli (named `tp`; defined only when
    # typer and uvicorn, the `server` extra, are importable).
    flag_source = FlagSource(
        "infinity-emb",
        commands=(FlagCommand("infinity_emb v2", "typer", "infinity_emb.cli:tp", subcommand="v2"),),
    )

    def task(self, profile: Profile) -> str:
        """Infinity serves no chat: an unset model.task means embedding."""
        return profile.model.task if "model.task" in profile.set_keys() else "embedding"

    # -- static side ----------------------------------------------------------------------
    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = super().check(profile, version)
        if self.task(profile) == "chat":
            issues.append(
                profile.issue(
                    ("model", "task"),
                    "Infinity serves embeddings and rerank, not chat",
                    hint="set model.task: embedding (or rerank), or use a chat backend",
                )
            )
        return issues

    def endpoint(self, profile: Profile, ctx: RenderContext) -> Endpoint:
        ep = super().endpoint(profile, ctx)
        return Endpoint(
            base_url=ep.base_url,  # .../v1: the --url-prefix llmctl always renders
            model=profile.served_name,
            health_url=ep.health_url,  # /health sits outside the prefix
            api_key_env=ep.api_key_env,
            task=self.task(profile),
        )

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: InfinityOptions = self.options(profile)
        m, r = profile.model, profile.resources
        argv = [executable_for_argv(self, profile), "v2"]
        flag(argv, "--model-id", self.model_arg(profile))
        flag(argv, "--served-model-name", profile.served_name)
        # Without the prefix the OpenAI paths (/v1/embeddings, /v1/models) are 404s.
        flag(argv, "--url-prefix", URL_PREFIX)
        flag(argv, "--host", profile.server.host)  # Infinity's default is 0.0.0.0
        flag(argv, "--port", self.port(profile, ctx))
        flag(argv, "--revision", m.revision)
        # Infinity trusts remote code unless told not to: always say which.
        argv.append("--trust-remote-code" if m.trust_remote_code else "--no-trust-remote-code")
        flag(argv, "--dtype", m.dtype)
        flag(argv, "--device", r.device)
        flag(argv, "--batch-size", r.max_num_seqs)
        flag(argv, "--engine", opts.engine)
        negatable_flag(argv, "--model-warmup", opts.model_warmup)
        negatable_flag(argv, "--vector-disk-cache", opts.vector_disk_cache)
        negatable_flag(argv, "--lengths-via-tokenize", opts.lengths_via_tokenize)
        negatable_flag(argv, "--compile", opts.compile)
        negatable_flag(argv, "--bettertransformer", opts.bettertransformer)
        flag(argv, "--embedding-dtype", opts.embedding_dtype)
        flag(argv, "--pooling-method", opts.pooling_method)
        flag(argv, "--log-level", opts.log_level)
        negatable_flag(argv, "--permissive-cors", opts.permissive_cors)
        argv += profile.extra_args
        warnings = []
        if any(a == "--api-key" or a.startswith("--api-key=") for a in profile.extra_args):
            warnings.append(
                "infinity: --api-key in extra_args puts the key in the process list (/proc); "
                "set server.api_key_env instead (llmctl passes it as INFINITY_API_KEY)"
            )

        env = self.base_env(profile, ctx)
        if profile.offline:
            env["INFINITY_ANONYMOUS_USAGE_STATS"] = "0"  # no usage statistics sent
        key = ctx.secret(profile.server.api_key_env)
        if key is not None:
            env["INFINITY_API_KEY"] = key
        return self.server_plan(profile, ctx, argv, env, warnings)

    # -- runtime side ---------------------------------------------------------------------
    def stop_plan(self, profile: Profile) -> StopPlan:
        return StopPlan(grace_s=15.0)
