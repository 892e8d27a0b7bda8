"""Memory planning: will this profile fit this GPU, and how many tokens of KV cache will it get?

Works before the weights are downloaded: config.json is enough (plus the safetensors index's
`metadata.total_size` when it is there). The model (docs/models.md has the derivation and
the accuracy against published vLLM startup logs):

    weights      safetensors headers (exact) > index metadata.total_size > params x bytes
                 (params from the config when there are no files; bytes from the dtype or the
                 quantization: bf16/fp16 2, fp8/int8 1, AWQ/GPTQ int4 0.5 + group scales)
    kv/token     2 x layers x kv_heads x head_dim x kv-dtype bytes (whole model); per GPU under
                 tensor parallel: ceil(kv_heads / tp) heads, at least one
    reserve      what the engine keeps for itself besides weights and KV (vLLM):
                   runtime      0.5 GiB (CUDA/cuBLAS buffers); + 1.75 GiB of NCCL and
                                all-reduce buffers when tp > 1
                   activations  max_num_batched_tokens x (3 x intermediate / tp + 3 x hidden)
                                x activation bytes; or the sampler's max_num_seqs x vocab x 8
                                bytes, whichever is larger
                   CUDA graphs  0.5 GiB unless enforce_eager (counted from vLLM 0.21, which
                                profiles it; older versions took it outside the budget)
    vLLM         kv = gpu_memory_utilization (default 0.92) x total - weights/tp - reserve;
                 tokens rounded down to whole blocks of 16
    LMDeploy     kv = cache_max_entry_count (default 0.8) x (total - weights/tp - runtime);
                 a value > 1 is a block count (blocks of 64 tokens)
    SGLang       kv = mem_fraction_static x total - weights/tp (activations live outside it)
    others       no pre-allocated pool: KV for max_model_len x max_num_seqs must fit next to
                 the weights (llama.cpp: the context size -c)

The per-engine budgets are the backends' own `memory` rules (llmdeploy_cli/memory_rules.py
holds the interface; backends/vllm.py, lmdeploy.py, sglang.py the three pooled rules): the
plan works out the model's side and asks the profile's backend what its engine takes.

The core never prints; `plan_for` returns a MemoryPlan and the CLI renders it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdeploy_cli.capabilities import Remedies
from llmdeploy_cli.errors import UsageError
from llmdeploy_cli.memory_rules import BudgetInputs, MemoryRule
from llmdeploy_cli.models.remedies import keep_accepted, remedies_for, suggestion
from llmdeploy_cli.models.shape import (
    ModelShape,
    gguf_config,
    kv_bytes_per_token,
    kv_dtype_bytes,
    params_from_config,
    quant_bytes,
    shape_from_config,
)
from llmdeploy_cli.models.units import DTYPE_BYTES, fmt_bytes

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.models.inspect import ModelInfo
    from llmdeploy_cli.profile import Profile


# -- the plan ------------------------------------------------------------------------------


@dataclass
class MemoryPlan:
    engine: str
    gpu_mem_bytes: int  # one GPU's total memory
    gpus: int
    tensor_parallel: int
    weights_bytes: int  # whole model
    weights_source: str
    weights_per_gpu: int
    kv_dtype: str
    kv_bytes_per_token: float  # per GPU
    kv_bytes_per_token_total: float
    reserve: dict[str, int]  # per GPU: runtime, activations, cuda_graphs
    budget_bytes: int  # per GPU: what the engine lets itself use
    budget_rule: str
    kv_cache_bytes: int  # per GPU
    kv_cache_tokens: int
    max_model_len: int
    max_num_seqs: int | None
    concurrency: float  # requests of max_model_len tokens that fit at once
    fits: bool
    memory_setting: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    params: int | None = None
    engine_version: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlanInputs:
    """Everything plan_for reads from a profile, so tests can build one by hand."""

    engine: str
    config: dict
    weights_bytes: int | None = None  # headers or index total_size, when known
    weights_source: str | None = None
    params: int | None = None
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    kv_cache_dtype: str | None = None
    dtype: str | None = None
    quantization: str | None = None
    enforce_eager: bool = False
    engine_version: str | None = None
    options: dict = field(default_factory=dict)
    memory: MemoryRule | None = None  # the backend's rule; None: ask the registry
    remedies: Remedies | None = None  # the backend's remedies; None: ask the registry


def _version(v: str | None) -> tuple[int, ...]:
    from llmdeploy_cli.engine_env import version_tuple

    return version_tuple(v) if v else (99,)


def memory_rule(engine: str) -> MemoryRule:
    """The memory rule the backend called `engine` declares (its `memory` capability)."""
    from llmdeploy_cli.registry import get

    rule = getattr(get(engine), "memory", None)
    if not isinstance(rule, MemoryRule):
        raise UsageError(
            f"backend '{engine}' declares no memory rule: llmctl cannot plan its memory",
            hint="the backend's `memory` capability is not supported; size the engine by its "
            "own documentation",
        )
    return rule


def weights_estimate(
    inp: PlanInputs, shape: ModelShape, rule: MemoryRule | None = None
) -> tuple[int, str, int | None]:
    """(bytes, source, params) of the whole model's weights. A quantization the engine
    applies while loading (the rule's `load_quant`: bitsandbytes, fp8 at load) shrinks the
    linear layers even when the files' sizes are known; embeddings and LM head stay 16-bit."""
    quant = inp.quantization or shape.quantization
    dtype = inp.dtype if inp.dtype and inp.dtype != "auto" else shape.dtype
    embed = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    at_load = (rule.load_quant if rule is not None else {}).get((inp.quantization or "").lower())
    if at_load is not None and not shape.quantization:
        params, counted = inp.params, "params"
        if not params and inp.weights_bytes:  # 16-bit files: bytes / bytes per weight
            stored = DTYPE_BYTES.get(shape.dtype.replace("torch.", ""), 2)
            params, counted = int(inp.weights_bytes / stored), f"{inp.weights_source} / {stored}"
        if not params:
            params, counted = params_from_config(shape), "config params"
        linear = max(params - embed, 0)
        total = int(linear * at_load.bytes_per_param + embed * 2)
        return total, f"{params:,} {counted}: {at_load.label}; embeddings 16-bit", params
    if inp.weights_bytes:
        return inp.weights_bytes, inp.weights_source or "files", inp.params
    params = inp.params or params_from_config(shape)
    per, label = quant_bytes(quant, dtype)
    if per < 2 and quant:  # embeddings and lm_head stay 16-bit in quantized checkpoints
        total = int((params - embed) * per + embed * 2)
    else:
        total = int(params * per)
    return total, f"config: {params:,} params x {label}", params


def compute_plan(inp: PlanInputs, gpu_mem_bytes: int, gpus: int | None = None) -> MemoryPlan:
    """The memory plan for one engine on GPUs of `gpu_mem_bytes` each."""
    shape = shape_from_config(inp.config)
    tp = max(1, inp.tensor_parallel)
    pp = max(1, inp.pipeline_parallel)
    gpus = gpus or tp * pp
    warnings = list(shape.notes)
    if gpus < tp * pp:
        warnings.append(
            f"tensor_parallel x pipeline_parallel = {tp * pp} GPUs, but only {gpus} given"
        )
    rule = inp.memory or memory_rule(inp.engine)
    weights, wsource, params = weights_estimate(inp, shape, rule)
    per_gpu_weights = int(weights / (tp * pp))
    model_dtype = inp.dtype if inp.dtype and inp.dtype != "auto" else shape.dtype
    kvb = kv_dtype_bytes(inp.kv_cache_dtype, model_dtype)
    kv_tok, kv_tok_total = kv_bytes_per_token(shape, kvb, tp)
    kv_tok /= pp
    if shape.kv_heads < tp and not shape.kv_lora_rank:
        warnings.append(
            f"{shape.kv_heads} kv heads over tp={tp}: each GPU keeps a full copy of one head"
        )
    max_len = inp.max_model_len or shape.context_length or 4096
    act_bytes = DTYPE_BYTES.get(model_dtype.replace("torch.", ""), 2)
    engine = inp.engine
    inter = shape.intermediate
    if shape.moe_experts:
        inter = shape.moe_intermediate * shape.moe_top_k
    got = rule.budget(
        BudgetInputs(
            gpu_mem_bytes=int(gpu_mem_bytes),
            weights_per_gpu=per_gpu_weights,
            kv_bytes_per_token=kv_tok,
            max_model_len=max_len,
            tensor_parallel=tp,
            hidden=shape.hidden,
            intermediate=inter,
            vocab=shape.vocab,
            act_bytes=act_bytes,
            gpu_memory_utilization=inp.gpu_memory_utilization,
            max_num_seqs=inp.max_num_seqs,
            max_num_batched_tokens=inp.max_num_batched_tokens,
            enforce_eager=inp.enforce_eager,
            engine_version=_version(inp.engine_version),
            options=inp.options,
        )
    )
    reserve, setting = got.reserve, got.setting
    budget, rule_text, kv, tokens = (
        got.budget_bytes,
        got.rule,
        got.kv_cache_bytes,
        got.kv_cache_tokens,
    )

    concurrency = tokens / max_len if max_len else 0.0
    fits = per_gpu_weights < budget and tokens >= max_len and kv > 0
    plan = MemoryPlan(
        engine=engine,
        gpu_mem_bytes=int(gpu_mem_bytes),
        gpus=gpus,
        tensor_parallel=tp,
        weights_bytes=int(weights),
        weights_source=wsource,
        weights_per_gpu=per_gpu_weights,
        kv_dtype=inp.kv_cache_dtype or "auto",
        kv_bytes_per_token=kv_tok,
        kv_bytes_per_token_total=kv_tok_total,
        reserve=reserve,
        budget_bytes=budget,
        budget_rule=rule_text,
        kv_cache_bytes=int(kv),
        kv_cache_tokens=max(tokens, 0),
        max_model_len=max_len,
        max_num_seqs=inp.max_num_seqs,
        concurrency=round(concurrency, 2),
        fits=fits,
        memory_setting=setting,
        warnings=warnings,
        params=params,
        engine_version=inp.engine_version,
    )
    fixes = inp.remedies if inp.remedies is not None else remedies_for(engine)
    plan.suggestions = suggest(plan, inp, shape, rule, fixes)
    return plan


def suggest(
    plan: MemoryPlan, inp: PlanInputs, shape: ModelShape, rule: MemoryRule, fixes: Remedies
) -> list[dict]:
    """Values that make the profile fit (or use the card better), each with the reason: only
    the remedies the backend declares (`fixes`), so every key is one it accepts."""
    out: list[dict] = []
    quantized = bool(inp.quantization or shape.quantization)
    if plan.weights_per_gpu >= plan.budget_bytes:
        if fixes.more_gpus:
            out.append(
                suggestion(
                    fixes.more_gpus,
                    plan.tensor_parallel * 2,
                    f"the weights ({fmt_bytes(plan.weights_per_gpu)} per GPU) do not fit "
                    f"in {fmt_bytes(plan.budget_bytes)}",
                )
            )
        if fixes.quantization and not quantized:
            out.append(suggestion(fixes.quantization))
        return out
    if plan.kv_cache_tokens < plan.max_model_len:
        remedy = rule.fraction_remedy(plan)
        if remedy is not None and fixes.memory_fraction:
            out.append(suggestion(fixes.memory_fraction, remedy["value"], remedy["why"]))
        if plan.kv_cache_tokens > 0 and fixes.shorter_context:
            out.append(
                suggestion(
                    fixes.shorter_context,
                    plan.kv_cache_tokens,
                    "the longest context the KV cache holds",
                )
            )
        if fixes.kv_cache_dtype and (inp.kv_cache_dtype or "auto") == "auto":
            out.append(suggestion(fixes.kv_cache_dtype))
        if fixes.quantization and not quantized:
            out.append(suggestion(fixes.quantization))
    if (
        fixes.fewer_seqs
        and plan.max_num_seqs
        and plan.concurrency
        and plan.max_num_seqs > plan.concurrency > 0
    ):
        out.append(
            suggestion(
                fixes.fewer_seqs,
                plan.max_num_seqs,
                f"only {plan.concurrency:g} requests of max_model_len fit at once; "
                "longer queues are fine when most requests are short",
                level="info",
            )
        )
    return out


# -- from a profile ------------------------------------------------------------------------


def inputs_for(
    profile: Profile, model_dir: Path | None = None, model_info: ModelInfo | None = None
) -> PlanInputs:
    """Read what the plan needs from a profile and the model's files (no network);
    `model_info`: model_dir already inspected (doctor's model check), not read again."""
    from llmdeploy_cli.models.cache import find_local
    from llmdeploy_cli.models.inspect import inspect_model, text_config
    from llmdeploy_cli.models.readers import read_gguf_meta, read_json

    src = model_dir or find_local(profile.model.source, profile)
    if src is None:
        raise UsageError(
            f"no local copy of {profile.model.source}: plan needs at least its config.json",
            hint="download it (llmctl pull PROFILE), or point model.source at a folder with "
            "config.json (and model.safetensors.index.json for the exact weight size)",
        )
    cfg: dict = {}
    weights = params = None
    wsource = None
    if src.is_file() or (src.is_dir() and not (src / "config.json").exists()):
        gguf = src if src.is_file() else next(iter(sorted(src.glob("*.gguf"))), None)
        if gguf is None:
            raise UsageError(f"{src} has no config.json: plan cannot read the model's shape")
        cfg = gguf_config(read_gguf_meta(gguf))
        weights, wsource = gguf.stat().st_size, "gguf file size"
    else:
        info = model_info or inspect_model(src)  # reads config.json too: info.config
        cfg = info.config
        if not cfg:  # empty: unreadable, or a real {} (read again only to say which)
            cfg, why = read_json(src / "config.json")
            if cfg is None:
                raise UsageError(f"config.json in {src} is {why}")
        if info.weight_bytes:
            weights = info.weight_bytes
            wsource = (
                "safetensors headers"
                if info.params_source == "safetensors-headers"
                else "index metadata.total_size"
                if info.format == "safetensors"
                else f"{info.format} file sizes"
            )
            params = info.params
            tied = text_config(cfg).get("tie_word_embeddings", cfg.get("tie_word_embeddings"))
            if tied and info.lm_head_bytes:  # stored, but engines reuse the embeddings
                weights -= info.lm_head_bytes
                wsource += " less the tied lm_head"
    r = profile.resources
    opts = profile.options or {}
    return PlanInputs(
        engine=profile.backend,
        config=cfg,
        weights_bytes=weights,
        weights_source=wsource,
        params=params,
        tensor_parallel=r.tensor_parallel,
        pipeline_parallel=r.pipeline_parallel,
        gpu_memory_utilization=r.gpu_memory_utilization,
        max_model_len=r.max_model_len,
        max_num_seqs=r.max_num_seqs,
        max_num_batched_tokens=r.max_num_batched_tokens,
        kv_cache_dtype=r.kv_cache_dtype,
        dtype=profile.model.dtype,
        quantization=profile.model.quantization,
        enforce_eager=bool(opts.get("enforce_eager")),
        options=opts,
    )


def plan_for(
    profile: Profile,
    gpu_mem_bytes: int,
    gpus: int | None = None,
    *,
    engine_version: str | None = None,
    model_dir: Path | None = None,
    model_info: ModelInfo | None = None,
) -> MemoryPlan:
    """The memory plan of a profile on GPUs of `gpu_mem_bytes` each (serve calls this)."""
    inp = inputs_for(profile, model_dir, model_info)
    inp.engine_version = engine_version
    mp = compute_plan(inp, gpu_mem_bytes, gpus)
    mp.suggestions = keep_accepted(profile, mp.suggestions, engine_version)
    return mp


# -- what a profile needs, per device (the gateway's question) ------------------------------


@dataclass
class MemoryNeed:
    """What the profile's engine takes: bytes on each of `gpus` GPUs, and host RAM."""

    on_gpu: bool
    gpus: int  # GPUs it spans (tensor x pipeline parallel); 0 on the CPU
    gpu_bytes: int  # on each GPU, as the engine's memory rule sizes it
    host_bytes: int  # host RAM: the base process (+ weights and KV on the CPU)
    rule: str  # how it was sized, in words
    base_source: str  # where the base process figure comes from (measured / estimate)
    plan: MemoryPlan | None = None


def memory_need(
    profile: Profile,
    *,
    gpu_mem_bytes: int | None = None,
    model_dir: Path | None = None,
    engine_version: str | None = None,
) -> MemoryNeed:
    """What the profile's engine needs on each device. On GPUs of `gpu_mem_bytes` (the
    total of one card) the backend's rule says what it takes at start on each (a fraction
    engine takes its whole budget); with `resources.device: cpu` or no GPU size, host RAM as
    models/host_plan.py counts it (weights + KV, or a batch's activations for embedding and
    rerank models, + the engine's base process memory).
    Raises UsageError when the model's config is not on disk or the backend has no rule."""
    inp = inputs_for(profile, model_dir)
    inp.engine_version = engine_version
    rule = memory_rule(inp.engine)
    r = profile.resources
    gpus = max(1, r.tensor_parallel) * max(1, r.pipeline_parallel)
    if profile.resources.device == "cpu" or not gpu_mem_bytes:
        p = compute_plan(inp, 1 << 50, gpus)  # no card limit: the KV of the context asked
        host = host_plan(inp, profile.model.task)  # embeddings: no KV, a batch
        return MemoryNeed(
            False, 0, 0, host.needs_bytes, f"host RAM: {host.rule}", rule.base.source, p
        )
    p = compute_plan(inp, gpu_mem_bytes, gpus)
    return MemoryNeed(
        True, gpus, rule.gpu_need(p), rule.base.bytes, p.budget_rule, rule.base.source, p
    )


def host_plan(inp: PlanInputs, task: str = "chat", available: int | None = None):
    """The CPU plan (llmdeploy_cli/models/host_plan.py) of these inputs."""
    from llmdeploy_cli.models.host_plan import compute_host_plan

    rule = inp.memory or memory_rule(inp.engine)
    weights = weights_estimate(inp, shape_from_config(inp.config), rule)
    return compute_host_plan(inp, task, available, rule, weights)


def host_plan_for(profile: Profile, *, model_dir: Path | None = None, available=None):
    """The CPU plan of a profile, against RAM available now (psutil) unless given."""
    from llmdeploy_cli.models import host_plan as hp

    inp = inputs_for(profile, model_dir)
    avail = hp.ram_available() if available is None else available
    return host_plan(inp, profile.model.task, avail)


__all__ = [
    "MemoryNeed",
    "MemoryPlan",
    "PlanInputs",
    "compute_plan",
    "host_plan",
    "host_plan_for",
    "memory_need",
    "memory_rule",
    "plan_for",
]
