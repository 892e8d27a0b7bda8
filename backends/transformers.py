"""Hugging Face `transformers serve` (transformers >= 5.2).

Facts this relies on (transformers 5.23 `serve --help` and source):
- `transformers serve [FORCE_MODEL] --host --port --device --dtype --trust-remote-code
  --quantization --attn-implementation --continuous-batching --log-level`;
- with FORCE_MODEL the model is preloaded and pinned (no idle unload) and requests must
  name it by that exact string; there is no served-name flag and no API key;
- `/health` answers before a model loads; `/v1/models` scans the HF cache and never lists
  a local directory, so readiness for a local model is a real completion.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmdeploy_cli.backend import Backend, Endpoint, Plan, RenderContext, flag
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
from llmdeploy_cli.memory_rules import BNB_8BIT, NF4_DOUBLE_QUANT, BaseMemory, MiB, NoPool
from llmdeploy_cli.profile import Profile

CPU_TORCH = "2.13.0"  # the CPU build the project's own .venv uses (Makefile)

# `transformers serve --quantization` choices (transformers 5.23 cli/serve.py).
QUANTIZATIONS = ("bnb-4bit", "bnb-8bit")


class TransformersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attn_implementation: str | None = Field(None, description="e.g. sdpa, flash_attention_2")
    continuous_batching: bool = Field(False, description="Paged attention + continuous batching")
    compile: bool = Field(False, description="torch.compile the model")
    reasoning: Literal["on", "off", "auto"] | None = Field(None, description="Reasoning mode")
    log_level: str | None = Field(None, description="Server log level (default: warning)")
    default_seed: int | None = Field(None, description="Default torch seed")


class TransformersBackend(Backend):
    name = "transformers"
    summary = "Hugging Face transformers serve (CPU or GPU, any HF model)"
    default_port = 8000
    executable = "transformers"
    distribution = "transformers"
    newest_known = "5.23.0"
    min_version = "5.2.0"  # `transformers serve FORCE_MODEL` as rendered here
    Options = TransformersOptions
    memory = NoPool(
        BaseMemory(
            848 * MiB,
            "measured: transformers 5.25 serve on CPU with a 0.4 MB model, RSS summed over "
            "the server, its multiprocessing spawn child and resource tracker after one chat "
            "request (torch 2.13 CPU build; PSS 637 MiB, docs/models.md)",
        ),
        # transformers/cli/serving/model_manager.py get_quantization_config: bnb-4bit is
        # NF4 with double quantization, bnb-8bit is LLM.int8 (load_in_8bit).
        load_quant={"bnb-4bit": NF4_DOUBLE_QUANT, "bnb-8bit": BNB_8BIT},
    )
    # The one memory fix transformers serve takes: --quantization (no context, memory
    # fraction or parallelism keys).
    remedies = Remedies(
        quantization=Remedy(
            "model.quantization",
            "bnb-4bit",
            "bitsandbytes NF4 while loading: about a third of the 16-bit weight memory "
            "(needs the bitsandbytes package and an NVIDIA GPU)",
        )
    )
    supports = frozenset(
        {
            "model.dtype",
            "model.trust_remote_code",
            "model.quantization",
            "resources.device",
        }
    )
    install_hint = (
        "python -m venv ~/.venvs/transformers && "
        "~/.venvs/transformers/bin/pip install 'transformers[serving]' torch"
    )
    lists_models = False
    timeouts = (180.0, 600.0, 300.0)

    # -- declared capabilities (llmdeploy_cli/capabilities.py) ----------------------------
    model_formats = frozenset({ModelFormat.HF_FOLDER})
    tasks = frozenset({Task.CHAT})  # /v1/chat/completions (and /v1/responses)
    runs_on_cpu = True
    container = ContainerSpec(None, "/root/.cache/huggingface", "HF_HOME")  # no image
    install = Recipe(
        default_version="5.23.0",
        devices=("cpu", "cuda"),
        packages=("transformers[serving]=={version}",),
        torch={"cpu": CPU_TORCH, "cuda": None},
    )
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope=NOT_SUPPORTED,
        cache_env="HF_HOME",
        endpoint_env="HF_ENDPOINT",
    )
    flag_source = FlagSource(
        "transformers",
        commands=(
            FlagCommand(
                "transformers serve",
                "typer",
                "transformers.cli.transformers:app",
                subcommand="serve",
            ),
        ),
    )

    def check(self, profile: Profile, version: str) -> list:
        issues = super().check(profile, version)
        q = profile.model.quantization
        if q is not None and q not in QUANTIZATIONS:
            issues.append(
                profile.issue(
                    ("model", "quantization"),
                    f"transformers serve takes --quantization {' or '.join(QUANTIZATIONS)}, "
                    f"not {q!r}",
                    hint="pre-quantized checkpoints (AWQ, GPTQ, fp8) load without this key",
                )
            )
        return issues

    def endpoint(self, profile: Profile, ctx: RenderContext) -> Endpoint:
        ep = super().endpoint(profile, ctx)
        # The pinned model answers only to the exact string it was started with.
        return Endpoint(
            base_url=ep.base_url,
            model=self.model_arg(profile),
            health_url=ep.health_url,
            api_key_env=None,
            task=ep.task,
        )

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: TransformersOptions = self.options(profile)
        m, r = profile.model, profile.resources
        argv = [executable_for_argv(self, profile), "serve", self.model_arg(profile)]
        flag(argv, "--host", profile.server.host)
        flag(argv, "--port", self.port(profile, ctx))
        flag(argv, "--device", r.device)
        flag(argv, "--dtype", m.dtype)
        flag(argv, "--trust-remote-code", m.trust_remote_code)
        flag(argv, "--quantization", m.quantization)
        flag(argv, "--attn-implementation", opts.attn_implementation)
        flag(argv, "--continuous-batching", opts.continuous_batching)
        flag(argv, "--compile", opts.compile)
        flag(argv, "--reasoning", opts.reasoning)
        flag(argv, "--log-level", opts.log_level)
        flag(argv, "--default-seed", opts.default_seed)
        argv += profile.extra_args
        env = self.base_env(profile, ctx)
        return self.server_plan(profile, ctx, argv, env)
