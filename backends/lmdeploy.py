"""LMDeploy `lmdeploy serve api_server` (target 0.18).

Every flag below was read from LMDeploy's own source: the 0.18.0 release
(`lmdeploy/cli/serve.py` `add_parser_api_server`, `lmdeploy/cli/utils.py` `ArgumentHelper`)
and the InternLM/lmdeploy repository history for the version gates:
- `lmdeploy serve api_server MODEL_PATH --server-name --server-port --model-name --backend
  {turbomind,pytorch} --dtype {auto,float16,bfloat16} --tp --session-len --max-batch-size
  --cache-max-entry-count --quant-policy --model-format --chat-template --reasoning-parser
  --tool-call-parser --api-keys --device {cuda,ascend,maca,camb} --revision --download-dir
  --log-level --trust-remote-code ...` (plain argparse: exact option strings only).
- `--server-name` defaults to 0.0.0.0 (every interface): the host is always rendered.
- `--trust-remote-code` is a store_true flag, default False, added in 0.13
  (commit 81be529 "add explicit trust_remote_code controls"); older releases trusted
  remote code implicitly.
- `--cache-max-entry-count` (default 0.8) is the fraction of FREE GPU memory left after the
  weights that the KV cache takes (`lmdeploy/messages.py`); vLLM's
  `--gpu-memory-utilization` is a fraction of TOTAL memory. They are not interchangeable,
  so `resources.gpu_memory_utilization` is refused here with a pointer to
  `options.cache_max_entry_count`. The PyTorch engine asserts 0 < x < 1.
- `--quant-policy` parses names (none/int4/int8/fp8/fp8_e4m3/fp8_e5m2/turbo_quant, 0.14+)
  or the ints 0/4/8/16/17/42 (`QuantPolicy` in `lmdeploy/messages.py`); llmctl renders the
  int, which every release that has that policy accepts.
- `--chat-template` takes a ChatTemplateConfig JSON file or a built-in template name, not
  a Jinja file (`get_chat_template` in `lmdeploy/cli/utils.py`), so the common
  `model.chat_template` key is refused and `options.chat_template` carries it.
- `--api-keys` (nargs='*') is the only way to give the server keys: there is no
  environment variable (`lmdeploy/serve/openai/api_server.py`). The key is a Secret in argv.
  `/health` is exempt from the key (`AuthenticationMiddleware` in
  `lmdeploy/serve/utils/server_utils.py`); `/v1/*` needs it.
- The engine is built before uvicorn binds the port: connection refused while loading;
  `/health` answers 200 when healthy (503 otherwise); `/v1/models` lists `--model-name`.
- `LMDEPLOY_USE_MODELSCOPE=True` switches downloads to ModelScope (`lmdeploy/utils.py`
  `get_model`, compared case-insensitively with "true").
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from llmctl_backends.flag_readers import reader_path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmdeploy_cli.backend import Backend, Plan, RenderContext, flag
from llmdeploy_cli.capabilities import (
    HF_OFFLINE,
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
from llmdeploy_cli.engine_env import executable_for_argv, version_tuple
from llmdeploy_cli.errors import ProfileError, ProfileIssue, name_backend
from llmdeploy_cli.memory_rules import (
    PYTORCH_BASE,
    RUNTIME_RESERVE,
    TP_RESERVE,
    BaseMemory,
    Budget,
    BudgetInputs,
    MemoryRule,
    Sizing,
    one_request_fraction,
    whole_blocks,
)
from llmdeploy_cli.profile import Profile

# QuantPolicy in lmdeploy/messages.py (0.18): name -> value; the CLI also takes fp8_e4m3.
QUANT_POLICIES = {
    "none": 0,
    "int4": 4,
    "int8": 8,
    "fp8": 16,
    "fp8_e4m3": 16,
    "fp8_e5m2": 17,
    "turbo_quant": 42,
}
# --model-format choices in lmdeploy/cli/utils.py (0.18).
MODEL_FORMATS = ("hf", "awq", "gptq", "compressed-tensors", "fp8", "mxfp4")
DEVICES = ("cuda", "ascend", "maca", "camb")
LOG_LEVELS = ("CRITICAL", "FATAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "NOTSET")


def _policy_value(v: int | str) -> int:
    if isinstance(v, bool):
        raise ValueError("must be a KV cache quant policy name or number")
    if isinstance(v, int):
        if v not in set(QUANT_POLICIES.values()):
            raise ValueError(f"must be one of {sorted(set(QUANT_POLICIES.values()))}")
        return v
    key = str(v).strip().lower()
    if key in QUANT_POLICIES:
        return QUANT_POLICIES[key]
    if key.isdigit():
        return _policy_value(int(key))
    raise ValueError(f"must be one of {', '.join(QUANT_POLICIES)} or 0/4/8/16/17/42")


class LmdeployOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["turbomind", "pytorch"] | None = Field(
        None,
        description="Inference engine (--backend); unset: LMDeploy's default (turbomind, "
        "falling back to pytorch for models TurboMind does not support)",
    )
    cache_max_entry_count: Annotated[float, Field(gt=0)] | None = Field(
        None,
        description="Fraction of FREE GPU memory after weights for the KV cache "
        "(--cache-max-entry-count, engine default 0.8); not vLLM's gpu_memory_utilization",
    )
    quant_policy: int | str | None = Field(
        None,
        description="KV cache quantization (--quant-policy): none/int4/int8/fp8/fp8_e5m2/"
        "turbo_quant or 0/4/8/16/17/42",
    )
    model_format: Literal[MODEL_FORMATS] | None = Field(  # type: ignore[valid-type]
        None, description="Weight format (--model-format); model.quantization sets it too"
    )
    device: Literal[DEVICES] | None = Field(  # type: ignore[valid-type]
        None, description="Device type (--device): cuda, ascend, maca, camb (PyTorch engine)"
    )
    chat_template: str | None = Field(
        None,
        description="ChatTemplateConfig JSON file or built-in template name (--chat-template)",
    )
    log_level: Literal[LOG_LEVELS] | None = Field(  # type: ignore[valid-type]
        None, description="Server log level (--log-level, engine default WARNING)"
    )
    max_prefill_token_num: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Most tokens per prefill iteration (--max-prefill-token-num)"
    )
    cache_block_seq_len: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Tokens per KV cache block (--cache-block-seq-len)"
    )
    enable_prefix_caching: bool = Field(False, description="--enable-prefix-caching")
    max_concurrent_requests: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Requests the server admits at once (--max-concurrent-requests)"
    )
    download_dir: str | None = Field(None, description="Where hub downloads go (--download-dir)")
    eager_mode: bool = Field(
        False, description="Disable CUDA graphs, PyTorch engine (--eager-mode)"
    )

    @field_validator("quant_policy")
    @classmethod
    def _policy(cls, v):
        return None if v is None else _policy_value(v)


# Hints for common keys LMDeploy cannot honour as the profile means them.
REFUSED_HINTS = {
    "resources.gpu_memory_utilization": (
        "LMDeploy sizes its KV cache as a fraction of the FREE memory left after the weights, "
        "not of total memory: set options.cache_max_entry_count (default 0.8) instead "
        "(docs/backends/lmdeploy.md)"
    ),
    "model.chat_template": (
        "LMDeploy's --chat-template takes a ChatTemplateConfig JSON file or a built-in "
        "template name, not a Jinja file: use options.chat_template"
    ),
    "resources.max_num_batched_tokens": (
        "LMDeploy has no per-step token budget; options.max_prefill_token_num caps prefill "
        "tokens per iteration"
    ),
    "resources.pipeline_parallel": (
        "LMDeploy serve has no pipeline parallelism: use tensor_parallel"
    ),
    "model.tokenizer": "LMDeploy always loads the tokenizer from the model directory",
}


# -- memory (the `memory` capability; arithmetic in llmdeploy_cli/memory_rules.py) ----------
# cache_max_entry_count (default 0.8, see the module docstring) is a fraction of the memory
# FREE after the weights; a value > 1 is a count of blocks, 64 tokens each in this plan
# (docs/models.md).
LMDEPLOY_DEFAULT_ENTRY = 0.8
LMDEPLOY_BLOCK = 64


class LmdeployMemory(MemoryRule):
    sizing = Sizing.FRACTION_OF_FREE

    def budget(self, b: BudgetInputs) -> Budget:
        entry = b.options.get("cache_max_entry_count")
        if entry is None:
            entry = b.gpu_memory_utilization or LMDEPLOY_DEFAULT_ENTRY
        runtime = RUNTIME_RESERVE + (TP_RESERVE if b.tensor_parallel > 1 else 0)
        reserve = {"runtime": runtime, "activations": 0, "cuda_graphs": 0}
        free_after = b.gpu_mem_bytes - b.weights_per_gpu - runtime
        if entry > 1:
            tokens = int(entry) * LMDEPLOY_BLOCK
            kv = int(tokens * b.kv_bytes_per_token)
            rule = f"cache_max_entry_count {entry} > 1: a count of {LMDEPLOY_BLOCK}-token blocks"
        else:
            kv = int(entry * free_after)
            rule = f"cache_max_entry_count {entry} x free memory after weights"
            tokens = whole_blocks(kv, b.kv_bytes_per_token, LMDEPLOY_BLOCK)
        setting = {"cache_max_entry_count": entry}
        return Budget(int(b.gpu_mem_bytes), rule, kv, tokens, reserve, setting)

    def fraction_remedy(self, plan) -> dict | None:
        """The cache_max_entry_count whose share of the memory free after the weights holds
        one full request (on a card of plan.gpu_mem_bytes free)."""
        free_after = plan.gpu_mem_bytes - plan.weights_per_gpu - sum(plan.reserve.values())
        if free_after <= 0:
            return None
        need_kv = plan.max_model_len * plan.kv_bytes_per_token
        return one_request_fraction(need_kv / free_after, plan)

    def setting_for_budget(
        self, plan, budget_bytes: int, card_total: int, free: int, layers: int | None = None
    ) -> dict | None:
        """cache_max_entry_count is a share of the memory free after the weights (and the
        runtime) at start: the share that keeps weights + runtime + KV within the budget,
        rounded down to a hundredth (0 < x < 1, the PyTorch engine's bound); None when it
        would not hold one full request."""
        fixed = plan.weights_per_gpu + sum(plan.reserve.values())
        free_after = free - fixed
        room = min(budget_bytes, free) - fixed
        if free_after <= 0 or room <= 0:
            return None
        value = min(0.95, math.floor(room / free_after * 100) / 100)
        if value <= 0 or value * free_after < plan.max_model_len * plan.kv_bytes_per_token:
            return None
        return {"options.cache_max_entry_count": value}


LMDEPLOY_MEMORY = LmdeployMemory(
    BaseMemory(
        PYTORCH_BASE,
        "estimate: at least python + torch + transformers imported (measured here, CPU "
        "build); the CUDA build and TurboMind add more",
    )
)

# lmdeploy/utils.py _get_and_verify_max_len (vLLM's, modified): a session_len above the
# model's derived length is logged as a warning, and served.
LMDEPLOY_CONTEXT = ContextLimit(
    refuses=False, source="lmdeploy/utils.py _get_and_verify_max_len (a warning only)"
)

# What plan and doctor may suggest: LMDeploy refuses resources.gpu_memory_utilization (its
# fraction is of FREE memory: options.cache_max_entry_count); --quant-policy takes int8;
# --model-format awq reads an AWQ checkpoint (LMDeploy does not quantize while loading).
LMDEPLOY_REMEDIES = Remedies(
    more_gpus=Remedy("resources.tensor_parallel"),
    shorter_context=Remedy("resources.max_model_len"),
    memory_fraction=Remedy("options.cache_max_entry_count"),
    kv_cache_dtype=Remedy(
        "resources.kv_cache_dtype", "int8", "halves the KV bytes per token (--quant-policy 8)"
    ),
    quantization=Remedy(
        "model.quantization",
        "awq",
        "an AWQ checkpoint of this model (lmdeploy lite auto_awq makes one): about a quarter "
        "of the weight memory",
    ),
    fewer_seqs=Remedy("resources.max_num_seqs"),
)


class LmdeployBackend(Backend):
    name = "lmdeploy"
    summary = "LMDeploy api_server (TurboMind or PyTorch engine, GPU)"
    default_port = 23333
    executable = "lmdeploy"
    distribution = "lmdeploy"
    newest_known = "0.18.0"
    # lmdeploy serve api_server's names for what common keys set.
    option_keys = {
        "session_len": "resources.max_model_len",
        "max_batch_size": "resources.max_num_seqs",
        "tp": "resources.tensor_parallel",
        "model_name": "model.served_name",
        "api_keys": "server.api_key_env",
    }
    Options = LmdeployOptions
    memory = LMDEPLOY_MEMORY
    remedies = LMDEPLOY_REMEDIES
    context_limit = LMDEPLOY_CONTEXT
    # options.device other than cuda: Ascend, MetaX (maca), Cambricon (camb): no NVIDIA GPU
    non_nvidia_devices = ("options.device", frozenset(DEVICES) - {"cuda"})
    refused_hints = REFUSED_HINTS
    supports = frozenset(
        {
            "model.served_name",
            "model.revision",
            "model.dtype",
            "model.trust_remote_code",
            "model.quantization",
            "model.reasoning_parser",
            "model.tool_call_parser",
            "server.api_key_env",
            "resources.device",
            "resources.max_model_len",
            "resources.max_num_seqs",
            "resources.tensor_parallel",
            "resources.kv_cache_dtype",
        }
    )
    install_hint = "python -m venv ~/.venvs/lmdeploy && ~/.venvs/lmdeploy/bin/pip install lmdeploy"
    timeouts = (900.0, 600.0, 300.0)

    # -- declared capabilities (llmdeploy_cli/capabilities.py) ----------------------------
    model_formats = frozenset({ModelFormat.HF_FOLDER})
    # lmdeploy/serve/openai/api_server.py: chat and completions (its /v1/embeddings
    # answers that it is unsupported).
    tasks = frozenset({Task.CHAT, Task.COMPLETIONS})
    runs_on_cpu = False  # llmctl installs and plans the CUDA build only
    container = ContainerSpec(
        "openmmlab/lmdeploy:v{version}", "/root/.cache/huggingface", "HF_HOME"
    )
    install = Recipe(
        default_version="0.18.0",
        devices=("cuda",),
        packages=("lmdeploy=={version}",),
        torch={"cuda": "2.12.1"},  # lmdeploy pins torch <= 2.12.1
        notes=("lmdeploy pins torch <= 2.12.1: it cannot share an env with a newer torch",),
    )
    # lmdeploy/utils.py: LMDEPLOY_USE_MODELSCOPE lower-cased == "true".
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope={"LMDEPLOY_USE_MODELSCOPE": "True"},
        cache_env="HF_HOME",
        endpoint_env="HF_ENDPOINT",
    )
    flag_source = FlagSource("lmdeploy", reader_file=reader_path("lmdeploy"))

    # -- static ---------------------------------------------------------------------------
    def options(self, profile: Profile) -> BaseModel:
        try:
            return super().options(profile)
        except ProfileError as e:
            name_backend(self.name, e.issues)
            raise

    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = super().check(profile, version)
        m, r, s = profile.model, profile.resources, profile.server
        try:
            opts = self.Options.model_validate(profile.options)
        except Exception:  # reported by options(); nothing more to check here
            return issues
        if m.dtype == "float32":
            issues.append(
                profile.issue(
                    ("model", "dtype"),
                    "LMDeploy's --dtype takes auto, float16 or bfloat16 (no float32)",
                    hint="use auto, float16 or bfloat16",
                )
            )
        if m.quantization is not None and m.quantization not in MODEL_FORMATS[1:]:
            issues.append(
                profile.issue(
                    ("model", "quantization"),
                    f"LMDeploy reads quantized weights as --model-format "
                    f"{'/'.join(MODEL_FORMATS[1:])} (got {m.quantization!r})",
                    hint="KV cache quantization is resources.kv_cache_dtype or "
                    "options.quant_policy",
                )
            )
        if (
            m.quantization is not None
            and opts.model_format is not None
            and m.quantization != opts.model_format
        ):
            issues.append(
                profile.issue(
                    ("options", "model_format"),
                    "model.quantization and options.model_format both set --model-format",
                    hint="keep one of them",
                )
            )
        if r.kv_cache_dtype is not None:
            try:
                policy = _policy_value(r.kv_cache_dtype) if r.kv_cache_dtype != "auto" else 0
            except ValueError as e:
                issues.append(
                    profile.issue(
                        ("resources", "kv_cache_dtype"),
                        f"LMDeploy KV cache quantization (--quant-policy) {e}",
                    )
                )
            else:
                if opts.quant_policy is not None and opts.quant_policy != policy:
                    issues.append(
                        profile.issue(
                            ("options", "quant_policy"),
                            "resources.kv_cache_dtype and options.quant_policy both set "
                            "--quant-policy and disagree",
                            hint="keep one of them",
                        )
                    )
        if r.device == "cpu":
            issues.append(
                profile.issue(
                    ("resources", "device"),
                    "LMDeploy has no CPU device (--device takes cuda, ascend, maca, camb)",
                )
            )
        elif r.device == "cuda" and opts.device not in (None, "cuda"):
            issues.append(
                profile.issue(
                    ("options", "device"),
                    f"resources.device is cuda but options.device is {opts.device}",
                    hint="keep one of them",
                )
            )
        if opts.device not in (None, "cuda") and opts.backend != "pytorch":
            issues.append(
                profile.issue(
                    ("options", "device"),
                    f"device {opts.device} runs only on LMDeploy's PyTorch engine",
                    hint="set options.backend: pytorch",
                )
            )
        policy = opts.quant_policy
        if policy is None and r.kv_cache_dtype not in (None, "auto"):
            try:
                policy = _policy_value(r.kv_cache_dtype)
            except ValueError:
                policy = None
        if policy in (16, 17, 42) and version_tuple(version) < (0, 14):
            issues.append(
                profile.issue(
                    ("options", "quant_policy")
                    if opts.quant_policy is not None
                    else ("resources", "kv_cache_dtype"),
                    f"KV cache policy {policy} (fp8, fp8_e5m2, turbo_quant) needs LMDeploy 0.14 "
                    f"or newer (rendering for {version})",
                    hint="use int8 or int4, or pin a newer runtime.engine_version",
                )
            )
        if s.api_key_env and profile.extra_args and not profile.extra_args[0].startswith("-"):
            issues.append(
                profile.issue(
                    ("extra_args",),
                    "extra_args follow --api-keys, which takes every value up to the next "
                    "flag: the first extra argument must be a --flag",
                )
            )
        cmec = opts.cache_max_entry_count
        if cmec is not None and cmec >= 1 and opts.backend == "pytorch":
            issues.append(
                profile.issue(
                    ("options", "cache_max_entry_count"),
                    "the PyTorch engine needs 0 < cache_max_entry_count < 1",
                )
            )
        return name_backend(self.name, issues)

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: LmdeployOptions = self.options(profile)
        m, r, s = profile.model, profile.resources, profile.server
        v = version_tuple(ctx.engine_version)
        warnings: list[str] = []
        argv = [executable_for_argv(self, profile), "serve", "api_server", self.model_arg(profile)]
        # --server-name defaults to 0.0.0.0: always say where it binds.
        flag(argv, "--server-name", s.host)
        flag(argv, "--server-port", self.port(profile, ctx))
        flag(argv, "--model-name", profile.served_name)
        flag(argv, "--backend", opts.backend)
        flag(argv, "--dtype", m.dtype)
        if m.trust_remote_code:
            if v >= (0, 13):
                argv.append("--trust-remote-code")
            else:
                warnings.append(
                    f"lmdeploy {ctx.engine_version} has no --trust-remote-code (added in 0.13); "
                    "it trusts remote code implicitly"
                )
        flag(argv, "--revision", m.revision)
        flag(argv, "--download-dir", opts.download_dir)
        flag(argv, "--session-len", r.max_model_len)
        flag(argv, "--max-batch-size", r.max_num_seqs)
        flag(argv, "--cache-max-entry-count", opts.cache_max_entry_count)
        flag(argv, "--cache-block-seq-len", opts.cache_block_seq_len)
        flag(argv, "--max-prefill-token-num", opts.max_prefill_token_num)
        flag(argv, "--enable-prefix-caching", opts.enable_prefix_caching)
        if r.tensor_parallel != 1:
            flag(argv, "--tp", r.tensor_parallel)
        policy = opts.quant_policy
        if policy is None and r.kv_cache_dtype not in (None, "auto"):
            policy = _policy_value(r.kv_cache_dtype)
        if policy:  # 0 is the engine default (no KV quantization)
            flag(argv, "--quant-policy", policy)
        flag(argv, "--model-format", opts.model_format or m.quantization)
        device = opts.device or (r.device if r.device == "cuda" else None)
        flag(argv, "--device", device)
        flag(argv, "--eager-mode", opts.eager_mode)
        flag(argv, "--chat-template", opts.chat_template)
        flag(argv, "--reasoning-parser", m.reasoning_parser)
        flag(argv, "--tool-call-parser", m.tool_call_parser)
        flag(argv, "--max-concurrent-requests", opts.max_concurrent_requests)
        flag(argv, "--log-level", opts.log_level)
        if s.api_key_env:
            # No environment variable exists for server keys: argv is the only way in.
            argv += ["--api-keys", ctx.secret(s.api_key_env)]
        argv += profile.extra_args

        env = self.base_env(profile, ctx)  # with hub's LMDEPLOY_USE_MODELSCOPE
        return self.server_plan(profile, ctx, argv, env, warnings)
