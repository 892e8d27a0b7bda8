"""Model folders: is one complete, what is in it, and where a hub id lives on this disk.

No network and no torch: safetensors weights are described by their headers (an 8-byte
little-endian header length, then a JSON header naming every tensor's dtype, shape and
byte range), GGUF files by their key/value metadata and tensor table.

`model_dir_problems` is what preflight and `doctor` call; it returns only warnings and
failures (an empty list means the folder is complete), each with the fix.
`find_local` resolves a hub id or an Ollama pull name to a folder/file already on disk,
looking only at caches (Hugging Face, ModelScope, Xinference, the profile's cache dir,
Ollama's model store).
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdeploy_cli.errors import Problem

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.profile import Profile

# Files that make up a tokenizer, by family. Any one group complete is enough.
TOKENIZER_SETS: tuple[tuple[str, ...], ...] = (
    ("tokenizer.json",),  # HF fast tokenizer
    ("tokenizer.model",),  # sentencepiece (Llama 1/2, Mistral, Gemma)
    ("spiece.model",),  # sentencepiece (T5)
    ("vocab.json", "merges.txt"),  # GPT-2 style BPE
    ("vocab.txt",),  # WordPiece (BERT, embedding models)
    ("qwen.tiktoken",),  # Qwen 1
    ("tokenizer.tiktoken",),
    ("sentencepiece.bpe.model",),  # XLM-R family (rerankers)
)

# Bytes per element of each safetensors dtype.
ST_DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F4": 0.5,
    "F6_E2M3": 0.75,
    "F6_E3M2": 0.75,
}
ST_DTYPE_NAMES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I8": "int8",
    "I32": "int32",
    "U8": "uint8",
    "F64": "float64",
}
MAX_HEADER = 100 * 1024 * 1024  # safetensors caps its header at 100 MB

INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


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
    lm_head_bytes: int | None = None  # stored lm_head.weight bytes (tied models load none)
    files: list[dict] = field(default_factory=list)  # {"name", "size"}
    config: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("config")
        return d


# -- safetensors ---------------------------------------------------------------------------


class HeaderError(ValueError):
    pass


def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor name -> dtype/shape/data_offsets)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise HeaderError("shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n <= 0 or n > MAX_HEADER:
            raise HeaderError(f"header length {n} is not plausible")
        body = f.read(n)
    if len(body) < n:
        raise HeaderError("header is cut short")
    try:
        header = json.loads(body)
    except ValueError as e:
        raise HeaderError(f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    header["__header_len__"] = n
    return header


@dataclass
class TensorStats:
    params: int = 0
    data_bytes: int = 0
    by_dtype: dict[str, int] = field(default_factory=dict)  # dtype -> bytes
    lm_head_bytes: int = 0  # a stored lm_head.weight (engines skip it when embeddings are tied)


def safetensors_stats(path: str | Path) -> tuple[TensorStats, int]:
    """(stats, bytes the file must have) from one file's header."""
    header = read_safetensors_header(path)
    n = header.pop("__header_len__")
    header.pop("__metadata__", None)
    st = TensorStats()
    end = 0
    for name, t in header.items():
        if not isinstance(t, dict) or "shape" not in t:
            raise HeaderError(f"tensor {name!r} has no shape")
        count = 1
        for d in t["shape"]:
            count *= int(d)
        lo, hi = t.get("data_offsets", (0, 0))
        st.params += count
        st.data_bytes += hi - lo
        st.by_dtype[t.get("dtype", "?")] = st.by_dtype.get(t.get("dtype", "?"), 0) + hi - lo
        if name.endswith("lm_head.weight"):
            st.lm_head_bytes += hi - lo
        end = max(end, hi)
    return st, 8 + n + end


# -- GGUF ----------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


def read_gguf_meta(path: str | Path, *, tensors: bool = True) -> dict[str, Any]:
    """GGUF key/value metadata (arrays longer than 64 items are skipped) and, with
    `tensors`, the parameter count from the tensor table. Raises HeaderError."""
    with open(path, "rb") as f:

        def take(n: int) -> bytes:
            b = f.read(n)
            if len(b) < n:
                raise HeaderError("file ends inside the GGUF header")
            return b

        def scalar(t: int):
            fmt = _GGUF_SCALARS[t]
            return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

        def string() -> str:
            (n,) = struct.unpack("<Q", take(8))
            if n > MAX_HEADER:
                raise HeaderError("implausible string length")
            return take(n).decode("utf-8", "replace")

        def value(t: int):
            if t in _GGUF_SCALARS:
                return scalar(t)
            if t == _STRING:
                return string()
            if t == _ARRAY:
                (et,) = struct.unpack("<I", take(4))
                (n,) = struct.unpack("<Q", take(8))
                if et in _GGUF_SCALARS and n > 64:
                    f.seek(n * struct.calcsize(_GGUF_SCALARS[et]), os.SEEK_CUR)
                    return f"<array of {n}>"
                items = [value(et) for _ in range(n)]
                return items if n <= 64 else f"<array of {n}>"
            raise HeaderError(f"unknown GGUF value type {t}")

        if take(4) != GGUF_MAGIC:
            raise HeaderError("not a GGUF file (bad magic)")
        (version,) = struct.unpack("<I", take(4))
        if version < 2:
            raise HeaderError(f"GGUF version {version} is too old")
        n_tensors, n_kv = struct.unpack("<QQ", take(16))
        meta: dict[str, Any] = {"gguf.version": version, "gguf.tensor_count": n_tensors}
        for _ in range(n_kv):
            key = string()
            (t,) = struct.unpack("<I", take(4))
            meta[key] = value(t)
        if tensors:
            params = 0
            for _ in range(n_tensors):
                string()
                (nd,) = struct.unpack("<I", take(4))
                dims = struct.unpack(f"<{nd}Q", take(8 * nd))
                take(4 + 8)  # ggml type, offset
                count = 1
                for d in dims:
                    count *= d
                params += count
            meta["gguf.params"] = params
    return meta


def is_gguf(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


# -- completeness --------------------------------------------------------------------------


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as e:
        return None, f"unreadable ({e})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


def tokenizer_files(path: Path) -> list[str] | None:
    """The first complete tokenizer file set in a folder, or None."""
    for group in TOKENIZER_SETS:
        if all((path / name).is_file() for name in group):
            return list(group)
    return None


def adapter_base(path: Path) -> str | None:
    cfg, _ = _read_json(path / "adapter_config.json")
    if cfg is None:
        return None
    return cfg.get("base_model_name_or_path") or None


def model_dir_problems(path: Path, *, need_gguf: bool = False) -> list[Problem]:
    """Why `path` is not a complete model (empty list: it is).

    Complete: config.json, a tokenizer (tokenizer.json, or tokenizer.model / vocab files),
    and weights: safetensors with an index whose every shard exists (or a single
    model.safetensors / other *.safetensors), or .bin files, or GGUF. With `need_gguf`
    (llama.cpp, Ollama) a GGUF file is required: the path itself or a *.gguf in the folder.
    A LoRA adapter folder fails with its base model and the advice to merge.
    """
    path = Path(path)
    if not path.exists():
        return [
            Problem(
                "model.files",
                "fail",
                f"{path} does not exist",
                fix="fix model.source, or download it first: llmctl pull PROFILE",
            )
        ]
    if path.is_file():
        return _file_problems(path, need_gguf)
    if not path.is_dir():
        return [Problem("model.files", "fail", f"{path} is neither a file nor a folder")]

    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        base = adapter_base(path) or "(adapter_config.json names no base model)"
        return [
            Problem(
                "model.adapter",
                "fail",
                f"{path} is a LoRA adapter, not a model; it needs the base model {base}",
                fix=(
                    "merge it into the base (peft: PeftModel.from_pretrained(base, adapter)"
                    ".merge_and_unload().save_pretrained(DIR)) and serve DIR, or serve the "
                    "base model and load the adapter with the engine's LoRA option"
                ),
                data={"base_model": adapter_base(path)},
            )
        ]

    ggufs = sorted(p for p in path.glob("*.gguf") if p.is_file())
    if need_gguf:
        if not ggufs:
            return [
                Problem(
                    "model.gguf",
                    "fail",
                    f"{path} holds no .gguf file, and this engine loads only GGUF",
                    fix="convert it with llama.cpp's convert_hf_to_gguf.py (and quantize), "
                    "or point model.source at a .gguf file",
                )
            ]
        probs: list[Problem] = []
        for g in ggufs:
            probs += _file_problems(g, True)
        return probs

    problems: list[Problem] = []
    cfg, why = _read_json(path / "config.json")
    if cfg is None and not ggufs:
        problems.append(
            Problem(
                "model.config",
                "fail",
                f"config.json is {why} in {path}",
                fix="download the model again (llmctl pull PROFILE), or copy config.json "
                "from the model's repository at the same revision",
            )
        )
    if not ggufs and tokenizer_files(path) is None:
        problems.append(
            Problem(
                "model.tokenizer",
                "fail",
                f"no tokenizer files in {path} (tokenizer.json, tokenizer.model, "
                "vocab.json + merges.txt, or vocab.txt)",
                fix="download the tokenizer files with the model (llmctl pull PROFILE), or "
                "set model.tokenizer to a folder or hub id that has them",
            )
        )
    problems += _weight_problems(path, ggufs)
    return problems


def _file_problems(path: Path, need_gguf: bool) -> list[Problem]:
    if path.suffix == ".gguf" or is_gguf(path):
        try:
            read_gguf_meta(path, tensors=False)
        except (HeaderError, OSError) as e:
            return [
                Problem(
                    "model.gguf",
                    "fail",
                    f"{path} is not a readable GGUF file: {e}",
                    fix="download or convert the file again (it may be cut short)",
                )
            ]
        return []
    if need_gguf:
        return [
            Problem(
                "model.gguf",
                "fail",
                f"{path} is not a GGUF file",
                fix="point model.source at a .gguf file",
            )
        ]
    return [
        Problem(
            "model.files",
            "fail",
            f"{path} is a single file; this engine loads a model folder",
            fix="point model.source at the folder holding config.json and the weights",
        )
    ]


def _weight_problems(path: Path, ggufs: list[Path]) -> list[Problem]:
    for index_name in INDEX_FILES:
        index_path = path / index_name
        if not index_path.exists():
            continue
        index, why = _read_json(index_path)
        if index is None or not isinstance(index.get("weight_map"), dict):
            return [
                Problem(
                    "model.weights",
                    "fail",
                    f"{index_name} is {why or 'without a weight_map'}",
                    fix="download the model again (llmctl pull PROFILE)",
                )
            ]
        shards = sorted(set(index["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            return [
                Problem(
                    "model.weights",
                    "fail",
                    f"{len(missing)} of {len(shards)} weight shards named in {index_name} "
                    f"are missing: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}",
                    fix="finish the download (llmctl pull PROFILE resumes where it stopped)",
                    data={"missing": missing},
                )
            ]
        return _truncation_problems(path, shards)

    sts = sorted(p.name for p in path.glob("*.safetensors") if p.is_file())
    if sts:
        return _truncation_problems(path, sts)
    bins = [p for p in path.glob("*.bin") if p.is_file() and p.name != "training_args.bin"]
    if bins or ggufs or any(path.glob("*.pt")) or any(path.glob("*.pth")):
        return []
    dangling = [p.name for p in path.iterdir() if p.is_symlink() and not p.exists()]
    extra = f" ({len(dangling)} broken links: an interrupted download?)" if dangling else ""
    return [
        Problem(
            "model.weights",
            "fail",
            f"no weights in {path} (no *.safetensors, *.bin or *.gguf){extra}",
            fix="download the model (llmctl pull PROFILE), or point model.source at the "
            "folder that has the weights",
        )
    ]


def _truncation_problems(path: Path, names: list[str]) -> list[Problem]:
    bad = []
    for name in names:
        if not name.endswith(".safetensors"):
            continue
        p = path / name
        try:
            _, need = safetensors_stats(p)
            size = p.stat().st_size
        except (HeaderError, OSError) as e:
            bad.append(f"{name}: {e}")
            continue
        if size < need:
            bad.append(f"{name}: {size} bytes, its header needs {need}")
    if not bad:
        return []
    return [
        Problem(
            "model.weights",
            "fail",
            f"{len(bad)} safetensors file(s) are cut short or damaged: {'; '.join(bad[:3])}",
            fix="download them again (llmctl pull PROFILE; delete the damaged files first)",
            data={"damaged": bad},
        )
    ]


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
    cfg, _ = _read_json(path / "config.json")
    if cfg is None and (path / "adapter_config.json").is_file():
        acfg, _ = _read_json(path / "adapter_config.json")
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
    if any(path.glob("*.safetensors")):
        info.format = "safetensors"
        _fill_from_safetensors(path, info)
    elif any(path.glob("*.bin")):
        info.format = "bin"
        index, _ = _read_json(path / "pytorch_model.bin.index.json")
        total = ((index or {}).get("metadata") or {}).get("total_size")
        info.weight_bytes = total if isinstance(total, int) else None
        if info.weight_bytes is None:
            info.weight_bytes = sum(
                p.stat().st_size for p in path.glob("*.bin") if p.name != "training_args.bin"
            )
    elif any(path.glob("*.gguf")):
        g = _inspect_gguf(sorted(path.glob("*.gguf"))[0], path)
        info.format, info.params, info.params_source = "gguf", g.params, g.params_source
        info.weight_bytes = g.weight_bytes
    else:
        index, _ = _read_json(path / "model.safetensors.index.json")
        total = ((index or {}).get("metadata") or {}).get("total_size")
        if isinstance(total, int):
            info.format = "safetensors"
            info.weight_bytes = total
    return info


def _fill_from_safetensors(path: Path, info: ModelInfo) -> None:
    total = TensorStats()
    names: list[str] = []
    index, _ = _read_json(path / "model.safetensors.index.json")
    if index and isinstance(index.get("weight_map"), dict):
        names = sorted(set(index["weight_map"].values()))
    else:
        names = sorted(p.name for p in path.glob("*.safetensors"))
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


# -- finding a hub id on disk --------------------------------------------------------------

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source)) and not source.startswith((".", "/", "~"))


def _env(environ, name: str) -> str | None:
    v = environ.get(name)
    return os.path.expanduser(v) if v else None


def hf_cache_dirs(profile: Profile | None = None, environ=None) -> list[Path]:
    """Hugging Face hub caches to look in, most specific first."""
    environ = os.environ if environ is None else environ
    out: list[Path] = []
    if profile is not None and profile.hub.cache_dir:
        base = Path(os.path.expanduser(profile.hub.cache_dir))
        out += [base / "hub", base]  # it is HF_HOME for the engine; accept a hub cache too
    if _env(environ, "HF_HUB_CACHE"):
        out.append(Path(_env(environ, "HF_HUB_CACHE")))
    if _env(environ, "HUGGINGFACE_HUB_CACHE"):
        out.append(Path(_env(environ, "HUGGINGFACE_HUB_CACHE")))
    if _env(environ, "HF_HOME"):
        out.append(Path(_env(environ, "HF_HOME")) / "hub")
    if _env(environ, "XINFERENCE_HOME"):
        out.append(Path(_env(environ, "XINFERENCE_HOME")) / "huggingface" / "hub")
    xdg = _env(environ, "XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    out.append(Path(xdg) / "huggingface" / "hub")
    return _dedupe(out)


def modelscope_cache_dirs(profile: Profile | None = None, environ=None) -> list[Path]:
    environ = os.environ if environ is None else environ
    out: list[Path] = []
    if profile is not None and profile.hub.cache_dir:
        out.append(Path(os.path.expanduser(profile.hub.cache_dir)))
    if _env(environ, "MODELSCOPE_CACHE"):
        out.append(Path(_env(environ, "MODELSCOPE_CACHE")))
    if _env(environ, "XINFERENCE_HOME"):
        out.append(Path(_env(environ, "XINFERENCE_HOME")) / "modelscope")
    out.append(Path(os.path.expanduser("~/.cache/modelscope")))
    return _dedupe(out)


def _dedupe(paths: list[Path]) -> list[Path]:
    seen, out = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def hf_snapshot(cache: Path, repo_id: str, revision: str | None = None) -> Path | None:
    """<cache>/models--org--name/snapshots/<commit> for `revision` (a branch or tag through
    refs/, or a commit). Without a revision: refs/main, else the newest snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    rev = revision or "main"
    ref = repo / "refs" / rev
    if ref.is_file():
        commit = ref.read_text().strip()
        cand = snaps / commit
        return cand if cand.is_dir() else None
    if (snaps / rev).is_dir():
        return snaps / rev
    if revision and len(revision) >= 7:  # a short commit hash
        hits = [p for p in snaps.iterdir() if p.is_dir() and p.name.startswith(revision)]
        if len(hits) == 1:
            return hits[0]
    if revision is not None:
        return None
    found = [p for p in snaps.iterdir() if p.is_dir()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def modelscope_folder(cache: Path, repo_id: str) -> Path | None:
    org, _, name = repo_id.partition("/")
    names = [name, name.replace(".", "___")]  # ModelScope stores dots as ___
    for base in (cache / "hub" / "models", cache / "models", cache / "hub", cache):
        for n in names:
            cand = base / org / n
            if cand.is_dir() and any(cand.iterdir()):
                return cand
    return None


def ollama_models_dir(environ=None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(_env(environ, "OLLAMA_MODELS") or os.path.expanduser("~/.ollama/models"))


def ollama_manifest(name: str, environ=None) -> Path | None:
    """The manifest of a pull name (NAME, NAME:TAG, NS/NAME:TAG) in Ollama's model store."""
    base = ollama_models_dir(environ) / "manifests"
    if not base.is_dir():
        return None
    model, _, tag = name.partition(":")
    tag = tag or "latest"
    parts = model.split("/")
    if len(parts) == 1:
        rel = Path("library", parts[0], tag)
    elif len(parts) == 2:
        rel = Path(parts[0], parts[1], tag)
    else:  # host/ns/name
        cand = base / Path(*parts) / tag
        return cand if cand.is_file() else None
    for registry_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        cand = registry_dir / rel
        if cand.is_file():
            return cand
    return None


def ollama_model_blob(manifest: Path, environ=None) -> Path | None:
    """The GGUF blob a manifest's model layer points at (blobs/sha256-<hex>)."""
    data, _ = _read_json(manifest)
    for layer in (data or {}).get("layers", []):
        if str(layer.get("mediaType", "")).endswith(".model"):
            digest = str(layer.get("digest", "")).replace(":", "-")
            return ollama_models_dir(environ) / "blobs" / digest
    return None


def find_local(source: str, profile: Profile | None = None, environ=None) -> Path | None:
    """A local folder (or file) for `source` without touching the network, or None.

    Local paths are returned as they are when they exist. A hub id is looked up in the
    Hugging Face cache (profile.hub.cache_dir, HF_HUB_CACHE, HF_HOME, XINFERENCE_HOME,
    ~/.cache/huggingface/hub; honouring model.revision and refs/main) and the ModelScope
    cache (MODELSCOPE_CACHE, XINFERENCE_HOME, ~/.cache/modelscope). For the ollama backend
    the source is a pull name, found in Ollama's model store (OLLAMA_MODELS, ~/.ollama/models):
    the model's GGUF blob is returned.
    """
    environ = os.environ if environ is None else environ
    if profile is not None and profile.model.source == source:
        local = profile.model_path()
        if local is not None:
            return local if local.exists() else None
    expanded = Path(os.path.expanduser(source))
    if expanded.exists() and (expanded.is_absolute() or source.startswith((".", "~"))):
        return expanded
    backend = profile.backend if profile is not None else None
    if backend == "ollama" or (":" in source and not looks_like_hub_id(source)):
        man = ollama_manifest(source, environ)
        if man is not None:
            blob = ollama_model_blob(man, environ)
            return blob if blob is not None and blob.exists() else None
        if backend == "ollama":
            return None
    if not looks_like_hub_id(source):
        return None
    revision = profile.model.revision if profile is not None else None
    hub = profile.hub.source if profile is not None else "huggingface"
    hf = [hf_snapshot(c, source, revision) for c in hf_cache_dirs(profile, environ)]
    ms = [modelscope_folder(c, source) for c in modelscope_cache_dirs(profile, environ)]
    order = ms + hf if hub == "modelscope" else hf + ms
    for cand in order:
        if cand is not None:
            return cand
    return None


__all__ = [
    "ModelInfo",
    "Problem",
    "find_local",
    "inspect_model",
    "model_dir_problems",
    "read_gguf_meta",
    "read_safetensors_header",
]
