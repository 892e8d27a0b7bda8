"""The tiny test model (tests/tinymodel.py) written as one GGUF file, with no converter.

The `gguf` package (the writer llama.cpp's own converters use) writes the file; this module
does what `convert_hf_to_gguf.py` does for a Llama, for the handful of tensors and
metadata keys a 2-layer Llama with a byte-level BPE tokenizer has:

- tensors: HF names mapped to llama.cpp's (`token_embd`, `blk.N.attn_q`, ..., `output_norm`);
  q_proj/k_proj rows are permuted back from HF's rotary layout (the converter's
  `LlamaModel.permute`); tied embeddings write no `output.weight` (llama.cpp then reuses
  `token_embd`); everything is F32 (norms must be F32 anyway, and the file is ~200 KB);
- hyperparameters under `llama.*` (context length, embedding length, blocks, heads, KV
  heads, rope dimension and base, RMS epsilon, vocab size);
- tokenizer: `tokenizer.ggml.model = gpt2` (byte-level BPE) with pre-tokenizer `gpt-2`
  (the HF tokenizer's ByteLevel pre-tokenizer uses GPT-2's regex), the tokens in id
  order with their types (special tokens CONTROL), the merges as "a b" strings, the
  bos/eos/pad ids, no automatic BOS, and the ChatML chat template.

`python -m tests.gguf_model MODEL_DIR OUT.gguf` writes one from the command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MARKER_SUFFIX = ".llmctl-ok"  # written next to the file once it is complete


def _permute(w, n_head: int, n_head_kv: int | None = None):
    """HF Llama q/k rows -> GGUF's rotary layout (convert_hf_to_gguf.LlamaModel.permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _rope_theta(config: dict) -> float:
    if "rope_theta" in config:
        return float(config["rope_theta"])
    params = config.get("rope_parameters") or {}
    return float(params.get("rope_theta", 10000.0))


def _tokenizer(model_dir: Path) -> dict:
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    model = tok["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"only BPE tokenizers are handled, not {model.get('type')!r}")
    vocab: dict[str, int] = dict(model["vocab"])
    special = set()
    for added in tok.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["id"])
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    for text, i in vocab.items():
        tokens[i] = text
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return {"tokens": tokens, "special": special, "merges": merges}


def write_gguf(model_dir: str | Path, out: str | Path) -> Path:
    """Write MODEL_DIR (a Llama saved by tests/tinymodel.py) to OUT as F32 GGUF."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    model_dir, out = Path(model_dir), Path(out)
    marker = out.with_name(out.name + MARKER_SUFFIX)
    if out.exists() and marker.exists():
        return out

    config = json.loads((model_dir / "config.json").read_text())
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    n_head = config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads", n_head)
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // n_head
    tok = _tokenizer(model_dir)

    chat_template = tok_config.get("chat_template")
    template_file = model_dir / "chat_template.jinja"
    if not chat_template and template_file.exists():
        chat_template = template_file.read_text()

    w = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    w.add_name(model_dir.name)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(_rope_theta(config))
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_vocab_size(len(tok["tokens"]))

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tok["tokens"])
    w.add_token_types(
        [
            gguf.TokenType.CONTROL if i in tok["special"] else gguf.TokenType.NORMAL
            for i in range(len(tok["tokens"]))
        ]
    )
    w.add_token_merges(tok["merges"])
    if config.get("bos_token_id") is not None:
        w.add_bos_token_id(config["bos_token_id"])
    eos = config.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0]
    if eos is not None:
        w.add_eos_token_id(eos)
    if config.get("pad_token_id") is not None:
        w.add_pad_token_id(config["pad_token_id"])
    w.add_add_bos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)

    tensors = load_file(str(model_dir / "model.safetensors"))
    names = gguf.TENSOR_NAMES
    T = gguf.MODEL_TENSOR
    per_layer = {
        "input_layernorm": T.ATTN_NORM,
        "self_attn.q_proj": T.ATTN_Q,
        "self_attn.k_proj": T.ATTN_K,
        "self_attn.v_proj": T.ATTN_V,
        "self_attn.o_proj": T.ATTN_OUT,
        "post_attention_layernorm": T.FFN_NORM,
        "mlp.gate_proj": T.FFN_GATE,
        "mlp.up_proj": T.FFN_UP,
        "mlp.down_proj": T.FFN_DOWN,
    }
    out_tensors: list[tuple[str, np.ndarray]] = [
        (names[T.TOKEN_EMBD] + ".weight", tensors["model.embed_tokens.weight"])
    ]
    for i in range(config["num_hidden_layers"]):
        for hf, kind in per_layer.items():
            data = tensors[f"model.layers.{i}.{hf}.weight"]
            if hf == "self_attn.q_proj":
                data = _permute(data, n_head, n_head)
            elif hf == "self_attn.k_proj":
                data = _permute(data, n_head, n_head_kv)
            out_tensors.append((names[kind].format(bid=i) + ".weight", data))
    out_tensors.append((names[T.OUTPUT_NORM] + ".weight", tensors["model.norm.weight"]))
    if "lm_head.weight" in tensors and not config.get("tie_word_embeddings", False):
        out_tensors.append((names[T.OUTPUT] + ".weight", tensors["lm_head.weight"]))
    for name, data in out_tensors:
        w.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    marker.write_text("ok\n")
    return out


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 3:
        print("usage: python -m tests.gguf_model MODEL_DIR OUT.gguf", file=sys.stderr)
        sys.exit(2)
    print(write_gguf(sys.argv[1], sys.argv[2]))
