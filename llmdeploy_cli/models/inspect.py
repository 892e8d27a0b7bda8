"""What a model folder (or GGUF file) holds: architecture, parameters, dtype, context.

Read from config.json, safetensors headers and GGUF metadata (models/readers.py); never
loads the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.models.readers import (
    ST_DTYPE_NAMES,
    HeaderError,
    TensorStats,
    is_adapter_file,
    read_gguf_meta,
    read_json,
    safetensors_stats,
)

if TYPE_CHECKING:  # pragma: no cover
    pass


@dataclass
class ModelInfo:
    """What a model folder (or GGUF file) holds, read without loading it."""

    path: str
    kind: str  # "model", "lora-adapter", "gguf"
    format: str  # "safetensors", "bin", "gguf", "none"
    architecture: str | None = None
    model_type: str | None = None
    params: int | None = None  # exact, from tensor shapes (quantized packs count as stored)
    params_source: str | None = None  # "safetensors-headers", "gguf", None
    dtype: str | None = None  # the dtype holding most weight bytes, or config torch_dtype
    weight_bytes: int | None = None  # bytes of tensor data (headers) or index total_size
    context_length: int | None = None
    vocab_size: int | None = None
    quantization: str | None = None
    base_model: str | None = None  # LoRA adapters
    # A LoRA adapter's files found inside a full model's folder (not counted in params)
    adapter_files: list[str] = field(default_factory=list)
    lm_head_bytes: int | None = None  # stored lm_head.weight bytes (tied models load none)
    files: list[dict] = field(default_factory=list)  # {"name", "size"}
    config: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("config")
        return d


# -- inspection ----------------------------------------------------------------------------


def text_config(cfg: dict) -> dict:
    """The language model's part of a config (multimodal configs nest it)."""
    for key in ("text_config", "llm_config", "language_config"):
        sub = cfg.get(key)
        if isinstance(sub, dict) and sub:
            return {**cfg, **sub}
    return cfg


def context_length(cfg: dict) -> int | None:
    c = text_config(cfg)
    for key in (
        "max_position_embeddings",
        "n_positions",
        "max_sequence_length",
        "seq_length",
        "n_ctx",
        "max_seq_len",
    ):
        v = c.get(key)
        if isinstance(v, int) and v > 0:
            return v
    return None


def quantization_of(cfg: dict) -> str | None:
    q = cfg.get("quantization_config") or text_config(cfg).get("quantization_config")
    if isinstance(q, dict):
        method = q.get("quant_method") or q.get("quant_type")
        bits = q.get("bits") or q.get("w_bit")
        if method and bits and str(method).lower() in ("gptq", "awq"):
            return f"{str(method).lower()}-int{bits}"
        return str(method).lower() if method else "unknown"
    return None


def model_config(model_dir: Path, model_info: ModelInfo | None = None) -> dict | None:
    """model_dir's config.json: `model_info`'s copy when the folder has been inspected,
    else read now (None: missing or unreadable)."""
    if model_info is not None and model_info.config:
        return model_info.config
    return read_json(Path(model_dir) / "config.json")[0]


def _files(path: Path) -> list[dict]:
    out = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and ".cache" not in p.relative_to(path).parts:
            out.append({"name": str(p.relative_to(path)), "size": p.stat().st_size})
    return out


def inspect_model(path: str | Path) -> ModelInfo:
    """Describe a model folder or GGUF file. Never raises for a damaged folder: fields it
    cannot read stay None (use model_dir_problems to say why). Raises FileNotFoundError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(str(path))
    if path.is_file():
        return _inspect_gguf(path, path)
    cfg, _ = read_json(path / "config.json")
    if cfg is None and (path / "adapter_config.json").is_file():
        acfg, _ = read_json(path / "adapter_config.json")
        info = ModelInfo(
            str(path),
            "lora-adapter",
            "safetensors" if any(path.glob("*.safetensors")) else "bin",
            base_model=(acfg or {}).get("base_model_name_or_path"),
            files=_files(path),
        )
        _fill_from_safetensors(path, info)
        return info
    if cfg is None:
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            return _inspect_gguf(ggufs[0], path)
    cfg = cfg or {}
    tc = text_config(cfg)
    archs = cfg.get("architectures") or []
    info = ModelInfo(
        str(path),
        "model",
        "none",
        architecture=archs[0] if archs else None,
        model_type=cfg.get("model_type"),
        dtype=tc.get("torch_dtype") or tc.get("dtype") or cfg.get("torch_dtype"),
        context_length=context_length(cfg),
        vocab_size=tc.get("vocab_size"),
        quantization=quantization_of(cfg),
        files=_files(path),
        config=cfg,
    )
    info.adapter_files = sorted(p.name for p in path.iterdir() if is_adapter_file(p.name))
    skip = {"training_args.bin", *info.adapter_files}
    model_bins = [p for p in path.glob("*.bin") if p.name not in skip]
    if any(not is_adapter_file(p.name) for p in path.glob("*.safetensors")):
        info.format = "safetensors"
        _fill_from_safetensors(path, info)
    elif model_bins:
        info.format = "bin"
        index, _ = read_json(path / "pytorch_model.bin.index.json")
        total = ((index or {}).get("metadata") or {}).get("total_size")
        info.weight_bytes = total if isinstance(total, int) else None
        if info.weight_bytes is None:
            info.weight_bytes = sum(p.stat().st_size for p in model_bins)
    elif any(path.glob("*.gguf")):
        g = _inspect_gguf(sorted(path.glob("*.gguf"))[0], path)
        info.format, info.params, info.params_source = "gguf", g.params, g.params_source
        info.weight_bytes = g.weight_bytes
    else:
        index, _ = read_json(path / "model.safetensors.index.json")
        total = ((index or {}).get("metadata") or {}).get("total_size")
        if isinstance(total, int):
            info.format = "safetensors"
            info.weight_bytes = total
    return info


def _fill_from_safetensors(path: Path, info: ModelInfo) -> None:
    total = TensorStats()
    names: list[str] = []
    index, _ = read_json(path / "model.safetensors.index.json")
    if index and isinstance(index.get("weight_map"), dict):
        names = sorted(set(index["weight_map"].values()))
    elif info.kind == "lora-adapter":
        names = sorted(p.name for p in path.glob("*.safetensors"))
    else:  # a model's own files: an adapter beside them is not counted twice
        names = sorted(p.name for p in path.glob("*.safetensors") if not is_adapter_file(p.name))
    complete = True
    for name in names:
        try:
            st, _ = safetensors_stats(path / name)
        except (HeaderError, OSError):
            complete = False
            continue
        total.params += st.params
        total.data_bytes += st.data_bytes
        total.lm_head_bytes += st.lm_head_bytes
        for k, v in st.by_dtype.items():
            total.by_dtype[k] = total.by_dtype.get(k, 0) + v
    if complete and names:
        info.params = total.params
        info.params_source = "safetensors-headers"
        info.weight_bytes = total.data_bytes
        info.lm_head_bytes = total.lm_head_bytes or None
        if total.by_dtype:
            top = max(total.by_dtype, key=lambda k: total.by_dtype[k])
            info.dtype = ST_DTYPE_NAMES.get(top, top.lower())
    else:
        meta_total = ((index or {}).get("metadata") or {}).get("total_size")
        if isinstance(meta_total, int):
            info.weight_bytes = meta_total


def _inspect_gguf(file: Path, shown: Path) -> ModelInfo:
    info = ModelInfo(str(shown), "gguf", "gguf", files=[])
    if shown.is_dir():
        info.files = _files(shown)
    else:
        info.files = [{"name": file.name, "size": file.stat().st_size}]
    try:
        meta = read_gguf_meta(file)
    except (HeaderError, OSError):
        return info
    arch = meta.get("general.architecture")
    info.architecture = arch
    info.model_type = arch
    info.params = meta.get("gguf.params")
    info.params_source = "gguf"
    info.weight_bytes = file.stat().st_size
    ft = meta.get("general.file_type")
    info.dtype = GGUF_FILE_TYPES.get(ft, str(ft) if ft is not None else None)
    if arch:
        info.context_length = meta.get(f"{arch}.context_length")
        info.vocab_size = meta.get(f"{arch}.vocab_size")
    if info.vocab_size is None:
        toks = meta.get("tokenizer.ggml.tokens")
        if isinstance(toks, str) and toks.startswith("<array of "):
            info.vocab_size = int(toks[len("<array of ") : -1])
        elif isinstance(toks, list):
            info.vocab_size = len(toks)
    return info


# llama.cpp's llama_ftype (general.file_type), the common ones.
GGUF_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}
