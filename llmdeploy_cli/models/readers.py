"""Reading model files without loading them: safetensors headers, GGUF metadata, JSON.

No network and no torch: safetensors weights are described by their headers (an 8-byte
little-endian header length, then a JSON header naming every tensor's dtype, shape and
byte range), GGUF files by their key/value metadata and tensor table.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    pass

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

# A PEFT adapter's files (adapter_config.json beside adapter_model.safetensors or .bin):
# weights of their own, never the model's.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def is_adapter_file(name: str) -> bool:
    return name in ADAPTER_WEIGHTS or name == ADAPTER_CONFIG


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


def read_json(path: Path) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as e:
        return None, f"unreadable ({e})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None
