"""The model's shape from its config.json (or GGUF metadata), and the arithmetic on it:
parameter count, bytes per weight, KV-cache bytes per token."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmdeploy_cli.models.units import DTYPE_BYTES


@dataclass
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    dtype: str = "bfloat16"
    context_length: int | None = None
    tied: bool = False
    moe_experts: int = 0
    moe_top_k: int = 0
    moe_intermediate: int = 0
    kv_lora_rank: int = 0  # MLA (DeepSeek V2/V3): compressed KV
    rope_head_dim: int = 0
    sliding_window: int | None = None
    attention_layers: int | None = None  # hybrid models: layers that keep a KV cache
    quantization: str | None = None
    notes: list[str] = field(default_factory=list)


def shape_from_config(cfg: dict) -> ModelShape:
    from llmdeploy_cli.models.inspect import context_length, quantization_of, text_config

    c = text_config(cfg)
    hidden = int(c.get("hidden_size") or c.get("n_embd") or c.get("d_model") or 0)
    heads = int(c.get("num_attention_heads") or c.get("n_head") or 0)
    layers = int(c.get("num_hidden_layers") or c.get("n_layer") or c.get("num_layers") or 0)
    if not (hidden and heads and layers):
        raise ValueError("config.json lacks hidden_size / num_attention_heads / num_hidden_layers")
    kv_heads = int(c.get("num_key_value_heads") or c.get("multi_query_group_num") or heads)
    head_dim = int(c.get("head_dim") or 0) or hidden // heads
    inter = int(c.get("intermediate_size") or c.get("ffn_hidden_size") or 4 * hidden)
    shape = ModelShape(
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=inter,
        vocab=int(c.get("vocab_size") or 32000),
        dtype=str(c.get("torch_dtype") or c.get("dtype") or "bfloat16"),
        context_length=context_length(cfg),
        tied=bool(c.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))),
        quantization=quantization_of(cfg),
    )
    experts = c.get("num_experts") or c.get("num_local_experts") or c.get("n_routed_experts")
    if experts:
        shape.moe_experts = int(experts)
        shape.moe_top_k = int(c.get("num_experts_per_tok") or c.get("moe_topk") or 2)
        shape.moe_intermediate = int(c.get("moe_intermediate_size") or inter)
    if c.get("kv_lora_rank"):
        shape.kv_lora_rank = int(c["kv_lora_rank"])
        shape.rope_head_dim = int(c.get("qk_rope_head_dim") or 64)
        shape.notes.append(
            "MLA attention (kv_lora_rank): KV per token is layers x (kv_lora_rank + "
            "qk_rope_head_dim) x bytes, replicated on every GPU; the 2 x kv_heads x head_dim "
            "formula does not apply"
        )
    sw = c.get("sliding_window")
    if isinstance(sw, int) and sw > 0 and c.get("use_sliding_window", True) is not False:
        shape.sliding_window = sw
        shape.notes.append(
            f"sliding-window attention ({sw} tokens) on some or all layers: engines that "
            "size those layers by the window hold more tokens than this plan says"
        )
    layer_types = c.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        full = sum(1 for t in layer_types if "full" in str(t) or t == "attention")
        if full and full < len(layer_types):
            shape.attention_layers = full
            shape.notes.append(
                f"hybrid layers ({full} of {len(layer_types)} keep a full KV cache): this "
                "plan counts only those; linear/sliding/mamba state is not modelled"
            )
    elif c.get("full_attention_interval") or c.get("attn_layer_period"):
        shape.notes.append(
            "hybrid attention/linear layers: the per-token KV formula overstates this model"
        )
    return shape


def params_from_config(shape: ModelShape) -> int:
    """Parameter count of a Llama-style decoder from its config (no files needed)."""
    h, hd = shape.hidden, shape.head_dim
    attn = h * shape.heads * hd + 2 * h * shape.kv_heads * hd + shape.heads * hd * h
    if shape.moe_experts:
        mlp = shape.moe_experts * 3 * h * shape.moe_intermediate + h * shape.moe_experts
    else:
        mlp = 3 * h * shape.intermediate
    per_layer = attn + mlp + 2 * h
    embed = shape.vocab * h * (1 if shape.tied else 2)
    return shape.layers * per_layer + embed + h


def quant_bytes(quant: str | None, dtype: str) -> tuple[float, str]:
    """Bytes per weight of the linear layers, and a label."""
    q = (quant or "").lower()
    if any(k in q for k in ("awq", "gptq", "int4", "4bit", "w4a16", "bnb-4bit", "nf4")):
        return 0.5 + 2 / 128 + 0.5 / 128, "int4 (group 128 scales)"
    if any(k in q for k in ("fp8", "int8", "8bit", "w8a8", "w8a16", "bnb-8bit")):
        return 1.0, "8-bit"
    return DTYPE_BYTES.get(dtype.replace("torch.", ""), 2), dtype


def kv_dtype_bytes(kv_cache_dtype: str | None, model_dtype: str) -> float:
    kv = (kv_cache_dtype or "auto").lower()
    if kv in ("auto", ""):
        return DTYPE_BYTES.get(model_dtype.replace("torch.", ""), 2)
    if kv.startswith("fp8") or kv in ("int8", "8"):
        return 1
    if kv in ("int4", "4"):
        return 0.5
    return DTYPE_BYTES.get(kv, 2)


def kv_bytes_per_token(shape: ModelShape, kv_bytes: float, tp: int = 1) -> tuple[float, float]:
    """(per GPU, whole model) KV-cache bytes for one token."""
    layers = shape.attention_layers or shape.layers
    if shape.kv_lora_rank:
        per = layers * (shape.kv_lora_rank + shape.rope_head_dim) * kv_bytes
        return per, per
    whole = 2 * layers * shape.kv_heads * shape.head_dim * kv_bytes
    heads_per_gpu = max(1, math.ceil(shape.kv_heads / tp))
    return 2 * layers * heads_per_gpu * shape.head_dim * kv_bytes, whole


def gguf_config(meta: dict) -> dict:
    arch = meta.get("general.architecture", "llama")

    def g(key, default=None):
        return meta.get(f"{arch}.{key}", default)

    heads = g("attention.head_count", 32)
    return {
        "architectures": [arch],
        "hidden_size": g("embedding_length", 4096),
        "num_attention_heads": heads if isinstance(heads, int) else max(heads),
        "num_key_value_heads": g("attention.head_count_kv", heads),
        "num_hidden_layers": g("block_count", 32),
        "intermediate_size": g("feed_forward_length", 11008),
        "max_position_embeddings": g("context_length", 4096),
        "head_dim": g("attention.key_length"),
        "vocab_size": meta.get(f"{arch}.vocab_size") or 32000,
        "torch_dtype": "float16",
    }


# -- the model's own context limit (vLLM's derivation) -------------------------------------
# vllm/config/model.py _get_and_verify_max_len (and, from 0.11, the same rules in
# vllm/transformers_utils/model_arch_config_convertor.py): the smallest of these keys of the
# text config; model_max_length (Command-R) wins outright; the rope scaling factor multiplies
# it unless the rope type is su/longrope/llama3 (already counted) or the model is Gemma 3;
# yarn starts from its original_max_position_embeddings. A max_model_len above the result
# is allowed only up to the config's model_max_length.
_MAX_LEN_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)


@dataclass(frozen=True)
class ContextInfo:
    derived: int  # the longest max_model_len the engine takes
    key: str  # the config key it comes from (with the rope scaling, when applied)
    model_max_length: int | None = None  # a larger value the engine also allows


def derived_max_len(cfg: dict) -> ContextInfo | None:
    """The model's own context limit as vLLM derives it; None when no key gives one."""
    from llmdeploy_cli.models.inspect import text_config

    c = text_config(cfg)
    derived: float = float("inf")
    key = None
    for k in _MAX_LEN_KEYS:
        v = c.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < derived:
            derived, key = v, k
    if isinstance(c.get("model_max_length"), int) and c["model_max_length"]:
        derived, key = c["model_max_length"], "model_max_length"
    if key is None:
        return None
    rope = c.get("rope_parameters") or c.get("rope_scaling")
    model_type = str(cfg.get("model_type") or c.get("model_type") or "")
    if isinstance(rope, dict) and rope and "gemma3" not in model_type:
        layers = rope if all(isinstance(v, dict) for v in rope.values()) else {"": rope}
        factor = 1.0
        for rp in layers.values():
            rtype = rp.get("rope_type") or rp.get("type") or "default"
            if rtype in ("su", "longrope", "llama3"):
                continue
            factor = rp.get("factor", factor) or factor
            if rtype == "yarn" and rp.get("original_max_position_embeddings"):
                derived = rp["original_max_position_embeddings"]
        if factor != 1.0:
            key = f"{key} x rope factor {factor:g}"
        derived *= factor
    mml = c.get("model_max_length")
    return ContextInfo(int(derived), key, mml if isinstance(mml, int) else None)
