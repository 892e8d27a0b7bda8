"""Memory units: GiB/MiB, bytes per dtype, and sizes as users and nvidia-smi write them."""

from __future__ import annotations

import re

from llmdeploy_cli.errors import UsageError

GiB = 1024**3
MiB = 1024**2

DTYPE_BYTES = {
    "float32": 4,
    "fp32": 4,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "bfloat16": 2,
    "bf16": 2,
    "auto": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "float8_e4m3fn": 1,
    "int8": 1,
    "fp4": 0.5,
    "int4": 0.5,
}

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?)(B?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'80GiB', '79.2G', '81559MiB', '80GB', '85899345920' -> bytes.

    Binary units (GiB, MiB, and a bare G/M as nvidia-smi and most tools mean it) are powers
    of 1024; GB/MB with a B and no i are powers of 1000.
    """
    m = _SIZE.match(str(text))
    if not m:
        raise UsageError(
            f"not a memory size: {text!r}", hint="write it like 80GiB, 81559MiB or 24G"
        )
    num, unit, i, b = m.groups()
    unit = unit.upper()
    if not unit:
        return int(float(num))
    power = "KMGT".index(unit) + 1
    base = 1000 if (b and not i) else 1024
    return int(float(num) * base**power)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    return f"{n / GiB:.2f} GiB"
