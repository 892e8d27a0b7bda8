"""The plan of a profile that runs on the CPU: host RAM needed against RAM available.

    chat          weights + KV of max_model_len x max_num_seqs (the whole model's KV bytes
                  per token) + the backend's base process memory
    embeddings,   weights + the activations of one batch (no KV cache): max_num_seqs
    rerank        (default 32) sequences of max_model_len (default min(context, 512)) tokens,
                  fp32, per layer (kept one at a time): 4 x hidden + intermediate floats per
                  token plus heads x length^2 attention scores per sequence
                  + the backend's base process memory

RAM available is psutil's `available` (what can be had without swapping). An estimate: the
weights term is the plan's (files, or params x bytes); the rest is a floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

EMBED_BATCH = 32  # sequences per batch when max_num_seqs is unset
EMBED_LEN = 512  # tokens per sequence when max_model_len is unset (and the model allows it)
ACT_BYTES = 4  # CPU inference runs in fp32


@dataclass
class HostPlan:
    engine: str
    task: str
    weights_bytes: int
    weights_source: str
    kv_bytes: int  # 0 for embedding and rerank models
    activations_bytes: int  # one batch, embedding and rerank models
    base_bytes: int
    base_source: str
    needs_bytes: int
    available_bytes: int | None
    fits: bool | None  # None: RAM available unknown
    rule: str
    max_model_len: int
    max_num_seqs: int
    params: int | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"device": "cpu", **asdict(self)}


def ram_available() -> int | None:
    try:
        import psutil
    except ImportError:  # pragma: no cover - a dependency of llmctl
        return None
    return int(psutil.virtual_memory().available)


def compute_host_plan(
    inp: Any, task: str, available: int | None, rule: Any, weights: tuple
) -> HostPlan:
    """`inp` a PlanInputs, `rule` the backend's memory rule, `weights` the plan's
    (bytes, source, params) (llmdeploy_cli/models/plan.py `host_plan` gathers them)."""
    from llmdeploy_cli.models.shape import kv_bytes_per_token, kv_dtype_bytes, shape_from_config

    shape = shape_from_config(inp.config)
    weights, wsource, params = weights
    context = shape.context_length or 4096
    if task == "chat":
        length = inp.max_model_len or context
        seqs = inp.max_num_seqs or 1
        dtype = inp.dtype if inp.dtype and inp.dtype != "auto" else shape.dtype
        _, per_token = kv_bytes_per_token(shape, kv_dtype_bytes(inp.kv_cache_dtype, dtype), 1)
        kv, act = int(per_token * length * seqs), 0
        how = "weights + KV of max_model_len x max_num_seqs + base process"
    else:
        length = inp.max_model_len or min(context, EMBED_LEN)
        seqs = inp.max_num_seqs or EMBED_BATCH
        per_token = (4 * shape.hidden + shape.intermediate) * ACT_BYTES
        scores = shape.heads * length * length * ACT_BYTES
        kv, act = 0, int(seqs * (length * per_token + scores))
        how = "weights + one batch's activations (no KV cache) + base process"
    need = weights + kv + act + rule.base.bytes
    return HostPlan(
        engine=inp.engine,
        task=task,
        weights_bytes=int(weights),
        weights_source=wsource,
        kv_bytes=kv,
        activations_bytes=act,
        base_bytes=rule.base.bytes,
        base_source=rule.base.source,
        needs_bytes=int(need),
        available_bytes=available,
        fits=None if available is None else need <= available,
        rule=how,
        max_model_len=length,
        max_num_seqs=seqs,
        params=params,
        warnings=list(shape.notes),
    )


__all__ = ["HostPlan", "compute_host_plan", "ram_available"]
