"""How an engine sizes its memory: the rule each backend declares as its `memory` capability.

Pure arithmetic, no imports beyond the standard library: the memory plan
(llmdeploy_cli/models/plan.py) works out the model's side (weights per GPU, KV bytes per
token, the context asked for) and hands it to the backend's rule as `BudgetInputs`; the
rule says what the engine will take (`Budget`). The engine-specific rules (vLLM, SGLang,
LMDeploy) live in their backend modules; this module holds the interface, the shared
constants and the rule of engines that pre-allocate no KV pool.

Kinds of sizing (`Sizing`):
    FRACTION_OF_TOTAL   a fraction of the card's total memory holds weights + KV (+ reserve):
                        vLLM gpu_memory_utilization, SGLang mem_fraction_static
    FRACTION_OF_FREE    a fraction of what is free after the weights goes to KV:
                        LMDeploy cache_max_entry_count
    LAYERS              the engine offloads layers to the GPU and allocates the KV of its
                        context size (llama.cpp -ngl/-c, Ollama)
    NONE                nothing pre-allocated: weights plus what the requests take
                        (transformers serve, Infinity)

`base` is the engine process's memory beyond the weights, in host RAM, for a model of
kilobytes (interpreter, libraries, server): measured where this project can run the engine,
otherwise an estimate that names its source.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

GiB = 1024**3
MiB = 1024**2

# What a CUDA engine keeps for itself besides weights and KV (docs/models.md: fitted to
# published vLLM startup logs).
RUNTIME_RESERVE = int(0.5 * GiB)  # CUDA context, cuBLAS workspaces
TP_RESERVE = int(1.75 * GiB)  # NCCL and all-reduce buffers when tensor_parallel > 1
CUDA_GRAPH_RESERVE = int(0.5 * GiB)  # logged estimates: 0.17, 0.36, 0.58 GiB

# Host RSS of `python -c "import torch, transformers"` (torch 2.13 CPU build, transformers
# 5.25, measured on this project's CI machine): the floor of every engine built on them.
PYTORCH_BASE = 264 * MiB


@dataclass(frozen=True)
class LoadQuant:
    """A quantization the engine applies while loading 16-bit weights: bytes per parameter of
    the linear layers (embeddings and the LM head stay 16-bit), and how that figure is made."""

    bytes_per_param: float
    label: str


# bitsandbytes 4-bit keeps one absmax per block of 64 weights: fp32 (4 bytes / 64), or with
# double quantization an 8-bit absmax plus one fp32 per 256 of them.
NF4_DOUBLE_QUANT = LoadQuant(
    0.5 + 1 / 64 + 4 / (64 * 256), "bitsandbytes NF4 at load, double-quantized absmax per 64"
)
BNB_4BIT = LoadQuant(0.5 + 4 / 64, "bitsandbytes 4-bit at load, fp32 absmax per 64")
BNB_8BIT = LoadQuant(1.0, "bitsandbytes LLM.int8 at load (8-bit, per-row scales)")
FP8_AT_LOAD = LoadQuant(1.0, "fp8 at load (per-tensor scales)")


class Sizing(enum.Enum):
    FRACTION_OF_TOTAL = "a fraction of the card's total memory"
    FRACTION_OF_FREE = "a fraction of the memory free after the weights"
    LAYERS = "layers offloaded to the GPU, the KV of the context size"
    NONE = "nothing pre-allocated"


@dataclass(frozen=True)
class BaseMemory:
    """Host memory of the engine's process beyond the weights, and where the figure comes
    from ("measured: ..." or "estimate: ...")."""

    bytes: int
    source: str

    @property
    def measured(self) -> bool:
        return self.source.startswith("measured")


@dataclass(frozen=True)
class BudgetInputs:
    """The model's side of the plan, per GPU, as the rule needs it."""

    gpu_mem_bytes: int  # one GPU's total memory
    weights_per_gpu: int
    kv_bytes_per_token: float  # per GPU
    max_model_len: int
    tensor_parallel: int = 1
    hidden: int = 0
    intermediate: int = 0  # dense MLP width, or moe_intermediate x top_k
    vocab: int = 0
    act_bytes: float = 2
    gpu_memory_utilization: float | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enforce_eager: bool = False
    engine_version: tuple[int, ...] = (99,)  # (99,) when unknown: the newest behaviour
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Budget:
    """What the engine takes on each GPU under its rule."""

    budget_bytes: int  # what the engine lets itself use
    rule: str  # the rule in words, with the setting's value
    kv_cache_bytes: int
    kv_cache_tokens: int
    reserve: dict[str, int] = field(
        default_factory=lambda: {"runtime": 0, "activations": 0, "cuda_graphs": 0}
    )
    setting: dict[str, Any] = field(default_factory=dict)  # the key(s) that set the budget


class MemoryRule:
    """A backend's memory rule. Subclasses set `sizing` and implement `budget`.

    `load_quant`: the profile's `model.quantization` values the engine applies while
    loading a 16-bit checkpoint, and what each weight then takes (the plan shrinks the
    weights term by it even when the files' sizes are known)."""

    sizing: ClassVar[Sizing]

    def __init__(self, base: BaseMemory, load_quant: Mapping[str, LoadQuant] | None = None):
        self.base = base
        self.load_quant: Mapping[str, LoadQuant] = dict(load_quant or {})

    @property
    def sizes_from_free(self) -> bool:
        """The engine sizes its cache from the memory free at start (not from the total)."""
        return self.sizing is Sizing.FRACTION_OF_FREE

    def budget(self, b: BudgetInputs) -> Budget:  # pragma: no cover - abstract
        raise NotImplementedError

    def gpu_need(self, plan) -> int:
        """Bytes the engine takes on each GPU at start, to compare with the free memory.
        `plan` is a MemoryPlan (weights_per_gpu, kv_cache_bytes, reserve, budget_bytes)."""
        return plan.weights_per_gpu + plan.kv_cache_bytes + sum(plan.reserve.values())

    def fraction_remedy(self, plan) -> dict | None:
        """{"value", "why"}: the memory fraction that holds one full request, where the
        engine's setting is a fraction (None otherwise, or when none up to 0.95 does).
        The key is the backend's `remedies.memory_fraction`."""
        return None

    def setting_for_budget(
        self, plan, budget_bytes: int, card_total: int, free: int, layers: int | None = None
    ) -> dict | None:
        """Profile overrides (dotted keys, as `plan` suggestions name them) that keep the
        engine within `budget_bytes` on one card of `card_total` bytes with `free` bytes free
        now (what the others resident leave), for a gateway that starts it next to them.
        `plan` is its MemoryPlan on that card; `layers` the model's layer count where known.
        {}: nothing to set, the engine takes what its plan says; None: no setting keeps it
        within the budget and still holds one full request."""
        return {}

    def describe(self) -> dict:
        return {
            "sizing": self.sizing.name.lower(),
            "meaning": self.sizing.value,
            "base_process_bytes": self.base.bytes,
            "base_source": self.base.source,
        }


def one_request_fraction(share: float, plan) -> dict | None:
    """`share` (the fraction that holds one full request) rounded up to a hundredth, as
    fraction_remedy answers it; None above 0.95."""
    value = math.ceil(share * 100) / 100
    if value > 0.95:
        return None
    return {"value": value, "why": f"holds one full {plan.max_model_len}-token request"}


class FractionOfTotal(MemoryRule):
    """Engines whose budget is a fraction of the card's total: that budget is what they
    take at start, whatever the KV cache turns out to be."""

    sizing = Sizing.FRACTION_OF_TOTAL

    def gpu_need(self, plan) -> int:
        return plan.budget_bytes

    def fraction_remedy(self, plan) -> dict | None:
        need_kv = plan.max_model_len * plan.kv_bytes_per_token
        other = plan.weights_per_gpu + sum(plan.reserve.values())
        return one_request_fraction((other + need_kv) / plan.gpu_mem_bytes, plan)

    def setting_for_budget(
        self, plan, budget_bytes: int, card_total: int, free: int, layers: int | None = None
    ) -> dict | None:
        """The fraction of the card's total that is at most the budget and at most what is
        free now (vLLM's GPU worker refuses to start when its fraction of the total exceeds
        the free memory: "Free memory on device ... is less than desired GPU memory
        utilization"), rounded down to a hundredth; None below the fraction of one request."""
        if card_total <= 0:
            return None
        take = min(budget_bytes, free)
        value = math.floor(take / card_total * 100) / 100
        one = (
            plan.weights_per_gpu
            + sum(plan.reserve.values())
            + plan.max_model_len * plan.kv_bytes_per_token
        )
        if value <= 0 or value * card_total < one:
            return None
        return {"resources.gpu_memory_utilization": min(value, 0.95)}


class NoPool(MemoryRule):
    """No pre-allocated pool: the KV of max_model_len x max_num_seqs must fit next to the
    weights and the CUDA runtime (llama.cpp: the context size -c)."""

    def __init__(
        self,
        base: BaseMemory,
        sizing: Sizing = Sizing.NONE,
        load_quant: Mapping[str, LoadQuant] | None = None,
    ):
        super().__init__(base, load_quant)
        self.sizing = sizing  # type: ignore[misc] - LAYERS or NONE, per backend

    def budget(self, b: BudgetInputs) -> Budget:
        seqs = b.max_num_seqs or 1
        reserve = {"runtime": RUNTIME_RESERVE, "activations": 0, "cuda_graphs": 0}
        tokens = b.max_model_len * seqs
        kv = int(tokens * b.kv_bytes_per_token)
        room = b.gpu_mem_bytes - b.weights_per_gpu - reserve["runtime"]
        if room < kv:
            tokens = int(max(room, 0) // b.kv_bytes_per_token)
        return Budget(
            budget_bytes=int(b.gpu_mem_bytes),
            rule="no pre-allocated pool: weights + KV of max_model_len x max_num_seqs",
            kv_cache_bytes=kv,
            kv_cache_tokens=tokens,
            reserve=reserve,
        )


def whole_blocks(kv_bytes: float, kv_per_token: float, block: int) -> int:
    """Tokens of KV cache in whole blocks of `block` tokens (0 when none fit)."""
    if not kv_per_token:
        return 0
    return int(max(kv_bytes, 0) // (kv_per_token * block)) * block


__all__ = [
    "CUDA_GRAPH_RESERVE",
    "PYTORCH_BASE",
    "RUNTIME_RESERVE",
    "TP_RESERVE",
    "BNB_4BIT",
    "BNB_8BIT",
    "FP8_AT_LOAD",
    "NF4_DOUBLE_QUANT",
    "BaseMemory",
    "Budget",
    "BudgetInputs",
    "FractionOfTotal",
    "LoadQuant",
    "MemoryRule",
    "NoPool",
    "Sizing",
    "whole_blocks",
]
