"""vLLM's OpenAI-compatible server: `vllm serve MODEL ...` (target vLLM 0.33).

Every flag below was read from vLLM's own source (vllm-project/vllm, 2026):
- vllm/entrypoints/cli/serve.py: `vllm serve [model_tag] [options]`; the positional model
  wins over `--model`.
- vllm/engine/arg_utils.py (`EngineArgs.add_cli_args`, `AsyncEngineArgs`): `--tokenizer
  --trust-remote-code --dtype --seed --revision --max-model-len --quantization
  --enforce-eager --served-model-name --generation-config --tokenizer-mode --load-format
  --download-dir --reasoning-parser --pipeline-parallel-size --tensor-parallel-size
  --data-parallel-size --enable-expert-parallel --nnodes --node-rank --master-addr
  --master-port --block-size --gpu-memory-utilization --kv-cache-memory-bytes
  --kv-cache-dtype --enable-prefix-caching --kv-offloading-size --kv-offloading-backend
  --cpu-offload-gb --limit-mm-per-prompt --enable-lora --max-loras --max-lora-rank
  --max-num-batched-tokens --max-num-seqs --enable-chunked-prefill --async-scheduling
  --hf-overrides --compilation-config --disable-log-stats --enable-log-requests`.
  Boolean config fields are `argparse.BooleanOptionalAction` (`--x` / `--no-x`).
  There is no `--device` and no `--swap-space` (removed in 0.18.0 by vLLM PR #36216: it
  only served V0's best_of swapping; CPU memory for KV is `--kv-offloading-size` now).
- vllm/config/cache.py: `gpu_memory_utilization` defaults to 0.92 (a fraction of the
  GPU's total memory for this instance); `kv_offloading_size` is GiB, summed over TP ranks.
- vllm/entrypoints/openai/cli_args.py (`FrontendArgs`): `--host --port --api-key
  --chat-template --default-chat-template-kwargs --enable-auto-tool-choice
  --tool-call-parser --lora-modules --max-log-len --uvicorn-log-level`.
- vllm/envs.py: `VLLM_API_KEY` (the server takes `--api-key` first, else this variable);
  `VLLM_USE_MODELSCOPE` is true only when its value lower-cased is the string `true`.
- vllm/reasoning/__init__.py and vllm/tool_parsers/__init__.py: parser names (`qwen3`,
  `deepseek_r1`, `hermes`, ...).

Readiness: the port refuses connections until the model is loaded, `GET /health` is 200
once up (503 when the engine died), `/health` is outside `/v1` so needs no key, while
`GET /v1/models` needs the key when one is set.
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
    negatable_flag,
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
from llmdeploy_cli.engine_env import executable_for_argv, version_tuple
from llmdeploy_cli.errors import ProfileIssue
from llmdeploy_cli.memory_rules import (
    BNB_4BIT,
    CUDA_GRAPH_RESERVE,
    FP8_AT_LOAD,
    PYTORCH_BASE,
    RUNTIME_RESERVE,
    TP_RESERVE,
    BaseMemory,
    Budget,
    BudgetInputs,
    FractionOfTotal,
    GiB,
    whole_blocks,
)
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    pass

SWAP_SPACE_REMOVED = (0, 18)


# `--quantization` values: the union of QUANTIZATION_METHODS as vLLM's recent sources list
# them (vllm/model_executor/layers/quantization/registry.py _BUILTIN_SPECS, and the
# QuantizationMethods Literal of __init__.py with auto_awq, auto_gptq, fp8_per_channel,
# nvfp4_per_token); the 0.33 tag itself could not be read here, so the union errs towards
# accepting. vLLM's model config refuses any other value ("Unknown quantization method:
# ... Must be one of ..."). A plugin that registers its own method
# (register_quantization_config) needs the flag through extra_args. Checked for 0.33 on;
# older versions are left to the engine.
QUANTIZATIONS_SINCE = (0, 33)
QUANTIZATIONS = (
    "awq",
    "auto_awq",
    "awq_marlin",
    "fp8",
    "fbgemm_fp8",
    "fp_quant",
    "modelopt",
    "modelopt_fp4",
    "modelopt_mxfp8",
    "modelopt_mixed",
    "gguf",
    "gptq",
    "auto_gptq",
    "gptq_marlin",
    "humming",
    "compressed-tensors",
    "bitsandbytes",
    "experts_int8",
    "quark",
    "moe_wna16",
    "torchao",
    "inc",
    "mxfp4",
    "gpt_oss_mxfp4",
    "deepseek_v4_fp8",
    "cpu_awq",
    "online",
    "fp8_per_tensor",
    "fp8_per_block",
    "fp8_per_channel",
    "int8_per_channel_weight_only",
    "nvfp4_per_token",
    "mxfp8",
)


class VllmOptions(BaseModel):
    """vLLM-only keys (profile `options:`). Unset keys render nothing: vLLM's default."""

    model_config = ConfigDict(extra="forbid")

    # memory and offload
    enforce_eager: bool | None = Field(
        None, description="--enforce-eager: no CUDA graphs (faster start, less memory)"
    )
    swap_space: float | None = Field(
        None, ge=0, description="--swap-space GiB (vLLM < 0.18 only; removed in 0.18)"
    )
    cpu_offload_gb: float | None = Field(
        None, ge=0, description="--cpu-offload-gb: GiB of weights kept in CPU memory"
    )
    kv_offloading_size: float | None = Field(
        None, gt=0, description="--kv-offloading-size: GiB of CPU memory for KV cache"
    )
    kv_offloading_backend: Literal["native", "lmcache"] | None = Field(
        None, description="--kv-offloading-backend"
    )
    kv_cache_memory_bytes: int | None = Field(
        None, gt=0, description="--kv-cache-memory-bytes (overrides gpu_memory_utilization)"
    )
    block_size: int | None = Field(None, gt=0, description="--block-size (tokens)")
    enable_prefix_caching: bool | None = Field(None, description="--[no-]enable-prefix-caching")
    enable_chunked_prefill: bool | None = Field(None, description="--[no-]enable-chunked-prefill")
    async_scheduling: bool | None = Field(None, description="--[no-]async-scheduling")
    # model loading
    tokenizer_mode: str | None = Field(None, description="--tokenizer-mode (auto, slow, ...)")
    load_format: str | None = Field(None, description="--load-format (auto, safetensors, ...)")
    download_dir: str | None = Field(None, description="--download-dir")
    generation_config: str | None = Field(
        None, description="--generation-config: auto, vllm, or a folder"
    )
    seed: int | None = Field(None, description="--seed")
    hf_overrides: dict | None = Field(None, description="--hf-overrides (JSON)")
    compilation_config: dict | None = Field(None, description="--compilation-config (JSON)")
    limit_mm_per_prompt: dict[str, int] | None = Field(
        None, description='--limit-mm-per-prompt (JSON), e.g. {"image": 2}'
    )
    # chat
    default_chat_template_kwargs: dict | None = Field(
        None, description='--default-chat-template-kwargs (JSON), e.g. {"enable_thinking": false}'
    )
    # LoRA
    enable_lora: bool | None = Field(None, description="--[no-]enable-lora")
    max_loras: int | None = Field(None, gt=0, description="--max-loras")
    max_lora_rank: int | None = Field(None, gt=0, description="--max-lora-rank")
    lora_modules: dict[str, str] | None = Field(
        None, description="--lora-modules NAME=PATH ... (served names of adapters)"
    )
    # parallelism beyond TP/PP, multi-node
    data_parallel_size: int | None = Field(None, ge=1, description="--data-parallel-size")
    enable_expert_parallel: bool | None = Field(None, description="--[no-]enable-expert-parallel")
    nnodes: int | None = Field(None, ge=1, description="--nnodes")
    node_rank: int | None = Field(None, ge=0, description="--node-rank")
    master_addr: str | None = Field(None, description="--master-addr")
    master_port: int | None = Field(None, ge=1, le=65535, description="--master-port")
    # logging
    disable_log_stats: bool = Field(False, description="--disable-log-stats")
    enable_log_requests: bool | None = Field(None, description="--[no-]enable-log-requests")
    max_log_len: int | None = Field(None, ge=0, description="--max-log-len")
    uvicorn_log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] | None = (
        Field(None, description="--uvicorn-log-level")
    )


# -- memory (the `memory` capability; arithmetic in llmdeploy_cli/memory_rules.py) ----------
# vllm/config/cache.py: gpu_memory_utilization defaults to 0.92 (0.9 before), a fraction of
# the card's TOTAL memory that holds weights, activations, CUDA graphs and the KV cache;
# kv_cache_memory_bytes replaces that budget. Blocks of 16 tokens (block_size). The reserve
# figures are fitted to published startup logs (docs/models.md).
VLLM_DEFAULT_UTIL = 0.92
VLLM_BLOCK = 16
VLLM_GRAPH_PROFILED_SINCE = (0, 21)  # CUDA graph memory counted in the KV budget
VLLM_V1_SINCE = (0, 8)  # chunked prefill always on; token budget per step


class VllmMemory(FractionOfTotal):
    def budget(self, b: BudgetInputs) -> Budget:
        util = b.gpu_memory_utilization or VLLM_DEFAULT_UTIL
        setting: dict = {"gpu_memory_utilization": util}
        if b.options.get("kv_cache_memory_bytes"):
            setting["kv_cache_memory_bytes"] = b.options["kv_cache_memory_bytes"]
        big_gpu = b.gpu_mem_bytes >= 70 * GiB
        max_len, tp = b.max_model_len, b.tensor_parallel
        if b.engine_version >= VLLM_V1_SINCE:
            batched = b.max_num_batched_tokens or (8192 if big_gpu else 2048)
            seqs = b.max_num_seqs or (1024 if big_gpu else 256)
        else:  # V0: no chunked prefill below 32k context, one max_model_len prompt profiled
            batched = b.max_num_batched_tokens or (max(max_len, 2048) if max_len <= 32768 else 512)
            seqs = b.max_num_seqs or 256
        act = batched * (3 * b.intermediate / tp + 3 * b.hidden) * b.act_bytes
        sampler = seqs * b.vocab * 8
        reserve = {
            "runtime": RUNTIME_RESERVE + (TP_RESERVE if tp > 1 else 0),
            "activations": int(max(act, sampler)),
            "cuda_graphs": 0,
        }
        if not b.enforce_eager and b.engine_version >= VLLM_GRAPH_PROFILED_SINCE:
            reserve["cuda_graphs"] = CUDA_GRAPH_RESERVE
        budget = int(util * b.gpu_mem_bytes)
        rule = f"gpu_memory_utilization {util} x total memory"
        kv = budget - b.weights_per_gpu - sum(reserve.values())
        if setting.get("kv_cache_memory_bytes"):
            kv = int(setting["kv_cache_memory_bytes"])
            rule = "kv_cache_memory_bytes (overrides gpu_memory_utilization)"
        block = int(b.options.get("block_size") or VLLM_BLOCK)
        tokens = whole_blocks(kv, b.kv_bytes_per_token, block)
        return Budget(budget, rule, kv, tokens, reserve, setting)


VLLM_MEMORY = VllmMemory(
    BaseMemory(
        PYTORCH_BASE,
        "estimate: at least python + torch + transformers imported (measured here, CPU "
        "build); the CUDA build and vLLM's own modules and workers add more",
    ),
    # vllm/model_executor/layers/quantization/bitsandbytes.py: a 16-bit checkpoint loaded
    # with --quantization bitsandbytes is quantized in flight to 4 bit (load_in_4bit
    # defaults to True; absmax in fp32, no double quantization); fp8.py quantizes a 16-bit
    # checkpoint to fp8 at load (is_checkpoint_fp8_serialized False).
    load_quant={"bitsandbytes": BNB_4BIT, "fp8": FP8_AT_LOAD},
)

# What plan and doctor may suggest: every key is in `supports`, every value one vLLM takes.
VLLM_REMEDIES = Remedies(
    more_gpus=Remedy("resources.tensor_parallel"),
    shorter_context=Remedy("resources.max_model_len"),
    memory_fraction=Remedy("resources.gpu_memory_utilization"),
    kv_cache_dtype=Remedy(
        "resources.kv_cache_dtype", "fp8", "halves the KV bytes per token (small quality cost)"
    ),
    quantization=Remedy(
        "model.quantization",
        "fp8",
        "vLLM quantizes 16-bit weights to fp8 while loading: about half the weight memory",
    ),
    fewer_seqs=Remedy("resources.max_num_seqs"),
)

# vllm/model_executor/layers/quantization/*.py get_min_capability (awq 75, gptq 60,
# bitsandbytes 70, fp8 80: Marlin weight-only below 8.9, W8A8 from 8.9; awq_marlin and
# gptq_marlin 80); vllm/platforms/cuda.py: bfloat16 needs compute capability 8.0; vLLM's
# CUDA build runs on 7.0 and newer.
VLLM_CARDS = CardLimits(
    minimum=(7, 0),
    dtype={"bfloat16": (8, 0)},
    quantization={
        "awq": (7, 5),
        "gptq": (6, 0),
        "bitsandbytes": (7, 0),
        "fp8": (8, 0),
        "awq_marlin": (8, 0),
        "gptq_marlin": (8, 0),
    },
    source="vllm/model_executor/layers/quantization/*.py get_min_capability, "
    "vllm/platforms/cuda.py",
)

# vllm/config/model.py _get_and_verify_max_len: a max_model_len above the derived length
# raises unless VLLM_ALLOW_LONG_MAX_MODEL_LEN is set.
VLLM_CONTEXT = ContextLimit(
    refuses=True,
    override_env="VLLM_ALLOW_LONG_MAX_MODEL_LEN",
    source="vllm/config/model.py _get_and_verify_max_len",
)


class VllmBackend(Backend):
    name = "vllm"
    summary = "vLLM OpenAI-compatible server (NVIDIA/AMD GPUs; the throughput engine)"
    default_port = 8000
    executable = "vllm"
    distribution = "vllm"
    newest_known = "0.33.0"
    # vllm serve's names for what common keys set (the rest match a common key's own name).
    option_keys = {
        "tensor_parallel_size": "resources.tensor_parallel",
        "pipeline_parallel_size": "resources.pipeline_parallel",
        "served_model_name": "model.served_name",
        "api_key": "server.api_key_env",
    }
    Options = VllmOptions
    memory = VLLM_MEMORY
    remedies = VLLM_REMEDIES
    card_limits = VLLM_CARDS
    context_limit = VLLM_CONTEXT
    # Every common key but one: vLLM has no --device flag (it picks its platform).
    supports = COMMON_KEYS - {"resources.device"}
    install_hint = "python -m venv ~/.venvs/vllm && ~/.venvs/vllm/bin/pip install vllm"
    # The port opens only after load (+ torch.compile and CUDA graph capture on a first
    # start), so the start phase covers download and load.
    timeouts = (1800.0, 300.0, 300.0)

    # -- declared capabilities (llmdeploy_cli/capabilities.py) ----------------------------
    model_formats = frozenset({ModelFormat.HF_FOLDER})
    # vllm/entrypoints/openai/api_server.py: chat and completions; for pooling models
    # /v1/embeddings and /v1/rerank.
    tasks = frozenset({Task.CHAT, Task.COMPLETIONS, Task.EMBEDDINGS, Task.RERANK})
    runs_on_cpu = False  # llmctl installs and plans the CUDA build only
    container = ContainerSpec("vllm/vllm-openai:v{version}", "/root/.cache/huggingface", "HF_HOME")
    install = Recipe(
        default_version="0.33.0",
        devices=("cuda",),
        packages=("vllm=={version}",),
        torch={"cuda": None},  # vLLM pins its own torch exactly
        prefer_uv=True,
        notes=("vLLM's exact pins may not resolve with plain pip: install uv",),
    )
    # vllm/envs.py: VLLM_USE_MODELSCOPE is true when its lower-cased value is "true".
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope={"VLLM_USE_MODELSCOPE": "true"},
        cache_env="HF_HOME",
        endpoint_env="HF_ENDPOINT",
    )
    flag_source = FlagSource("vllm", reader_file=reader_path("vllm"))

    # -- static side ----------------------------------------------------------------------
    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = super().check(profile, version)
        opts = profile.options or {}
        quant = profile.model.quantization
        known = quant is None or quant in QUANTIZATIONS
        if not known and _at_least(version, QUANTIZATIONS_SINCE):
            issues.append(
                profile.issue(
                    ("model", "quantization"),
                    f"vLLM {version} has no quantization method {quant!r}",
                    hint="one of: " + ", ".join(QUANTIZATIONS) + " (or leave it unset: vLLM "
                    "reads the method from the model's quantization_config)",
                )
            )
        if opts.get("swap_space") is not None and _at_least(version, SWAP_SPACE_REMOVED):
            issues.append(
                profile.issue(
                    ("options", "swap_space"),
                    f"vLLM {version} has no --swap-space (removed in 0.18; it only backed "
                    "V0's best_of swapping and did nothing in the V1 engine)",
                    hint="remove it; for KV cache in CPU memory use options.kv_offloading_size "
                    "(--kv-offloading-size, GiB), for weights options.cpu_offload_gb",
                )
            )
        return issues

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: VllmOptions = self.options(profile)
        m, r = profile.model, profile.resources
        set_keys = profile.set_keys()
        warnings: list[str] = []

        argv = [executable_for_argv(self, profile), "serve", self.model_arg(profile)]
        flag(argv, "--host", profile.server.host)
        flag(argv, "--port", self.port(profile, ctx))
        # Always: otherwise vLLM serves under the model path, which clients must then send.
        flag(argv, "--served-model-name", profile.served_name)
        flag(argv, "--revision", m.revision)
        flag(argv, "--tokenizer", m.tokenizer)
        flag(argv, "--dtype", m.dtype)
        flag(argv, "--trust-remote-code", m.trust_remote_code)
        flag(argv, "--quantization", m.quantization)
        flag(argv, "--chat-template", _expand(m.chat_template))
        flag(argv, "--reasoning-parser", m.reasoning_parser)
        if m.tool_call_parser:
            # The profile key means "turn tool calls into OpenAI tool_calls": vLLM needs both.
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", m.tool_call_parser]
        # Only what the profile sets: vLLM's own defaults (0.92 utilization, ...) stay.
        flag(argv, "--gpu-memory-utilization", r.gpu_memory_utilization)
        flag(argv, "--max-model-len", r.max_model_len)
        flag(argv, "--max-num-seqs", r.max_num_seqs)
        flag(argv, "--max-num-batched-tokens", r.max_num_batched_tokens)
        if "resources.tensor_parallel" in set_keys:
            flag(argv, "--tensor-parallel-size", r.tensor_parallel)
        if "resources.pipeline_parallel" in set_keys:
            flag(argv, "--pipeline-parallel-size", r.pipeline_parallel)
        flag(argv, "--kv-cache-dtype", r.kv_cache_dtype)
        self._options_argv(argv, opts, ctx)
        argv += profile.extra_args
        if any(a == "--api-key" or a.startswith("--api-key=") for a in profile.extra_args):
            warnings.append(
                "vllm: --api-key in extra_args puts the key in the process list (/proc); "
                "set server.api_key_env instead (llmctl passes it as VLLM_API_KEY)"
            )

        env = self.base_env(profile, ctx)  # with hub's VLLM_USE_MODELSCOPE
        key = ctx.secret(profile.server.api_key_env)
        if key is not None:
            env["VLLM_API_KEY"] = key
        return self.server_plan(profile, ctx, argv, env, warnings)

    def _options_argv(self, argv: list, o: VllmOptions, ctx: RenderContext) -> None:
        negatable_flag(argv, "--enforce-eager", o.enforce_eager)
        if o.swap_space is not None and not _at_least(ctx.engine_version, SWAP_SPACE_REMOVED):
            flag(argv, "--swap-space", _num(o.swap_space))
        flag(argv, "--cpu-offload-gb", _num(o.cpu_offload_gb))
        flag(argv, "--kv-offloading-size", _num(o.kv_offloading_size))
        flag(argv, "--kv-offloading-backend", o.kv_offloading_backend)
        flag(argv, "--kv-cache-memory-bytes", o.kv_cache_memory_bytes)
        flag(argv, "--block-size", o.block_size)
        negatable_flag(argv, "--enable-prefix-caching", o.enable_prefix_caching)
        negatable_flag(argv, "--enable-chunked-prefill", o.enable_chunked_prefill)
        negatable_flag(argv, "--async-scheduling", o.async_scheduling)
        flag(argv, "--tokenizer-mode", o.tokenizer_mode)
        flag(argv, "--load-format", o.load_format)
        flag(argv, "--download-dir", _expand(o.download_dir))
        flag(argv, "--generation-config", o.generation_config)
        flag(argv, "--seed", o.seed)
        flag(argv, "--hf-overrides", _json(o.hf_overrides))
        flag(argv, "--compilation-config", _json(o.compilation_config))
        flag(argv, "--limit-mm-per-prompt", _json(o.limit_mm_per_prompt))
        flag(argv, "--default-chat-template-kwargs", _json(o.default_chat_template_kwargs))
        negatable_flag(argv, "--enable-lora", o.enable_lora)
        flag(argv, "--max-loras", o.max_loras)
        flag(argv, "--max-lora-rank", o.max_lora_rank)
        if o.lora_modules:
            argv.append("--lora-modules")
            argv += [f"{name}={_expand(path)}" for name, path in o.lora_modules.items()]
        flag(argv, "--data-parallel-size", o.data_parallel_size)
        negatable_flag(argv, "--enable-expert-parallel", o.enable_expert_parallel)
        flag(argv, "--nnodes", o.nnodes)
        flag(argv, "--node-rank", o.node_rank)
        flag(argv, "--master-addr", o.master_addr)
        flag(argv, "--master-port", o.master_port)
        flag(argv, "--disable-log-stats", o.disable_log_stats)
        negatable_flag(argv, "--enable-log-requests", o.enable_log_requests)
        flag(argv, "--max-log-len", o.max_log_len)
        flag(argv, "--uvicorn-log-level", o.uvicorn_log_level)

    # -- runtime side ---------------------------------------------------------------------
    def stop_plan(self, profile: Profile) -> StopPlan:
        # SIGTERM lets vLLM stop its engine-core and worker processes and free the GPU;
        # multi-GPU shutdowns take several seconds.
        return StopPlan(grace_s=30.0)


def _at_least(version: str, minimum: tuple[int, ...]) -> bool:
    v = version_tuple(version)
    return bool(v) and v >= minimum


def _num(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _expand(path: str | None) -> str | None:
    return None if path is None else os.path.expanduser(path)
