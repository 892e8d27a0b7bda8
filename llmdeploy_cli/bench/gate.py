"""`--fail-if "p99_ttft_ms>500"`: CI gates on bench results (a failing gate exits 6).

A gate names a numeric key of the result (vLLM names, or `llmctl.…` dotted paths), a
comparator (> >= < <= ==) and a number. It *fails* the run when the comparison is true.
A key the result can never carry is a usage error, found before the run starts, with the
closest known keys; a key that has no value in this run (e.g. no request completed, so no
p99_ttft_ms) fails the gate, since "no data" must not pass CI.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from dataclasses import dataclass

from llmdeploy_cli.errors import UsageError

OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}
_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|==|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Gate:
    key: str
    op: str
    limit: float
    text: str

    def check(self, result: dict) -> tuple[bool, float | None]:
        """(failed, value). A missing or null value fails."""
        value = lookup(result, self.key)
        if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            return True, None
        if isinstance(value, float) and math.isnan(value):
            return True, None
        return bool(OPS[self.op](value, self.limit)), float(value)


def lookup(result: dict, key: str):
    cur = result
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def parse_gate(text: str, known: list[str]) -> Gate:
    m = _GATE.match(text)
    if not m:
        raise UsageError(
            f"bad --fail-if {text!r}",
            hint="write KEY OP NUMBER, e.g. 'p99_ttft_ms>500' (OP: > >= < <= ==)",
        )
    key, op, raw = m.groups()
    try:
        limit = float(raw)
    except ValueError:
        raise UsageError(f"bad --fail-if {text!r}: {raw!r} is not a number") from None
    if key not in known and not key.startswith("llmctl."):
        raise UsageError(f"--fail-if: unknown result key '{key}'", hint=known_hint(key, known))
    return Gate(key, op, limit, text.strip())


def known_hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=4, cutoff=0.5)
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"known keys: {', '.join(sorted(known))}"


def parse_gates(texts: list[str] | None, known: list[str]) -> list[Gate]:
    return [parse_gate(t, known) for t in texts or []]


def evaluate(gates: list[Gate], result: dict) -> list[dict]:
    out = []
    for g in gates:
        failed, value = g.check(result)
        out.append({"gate": g.text, "key": g.key, "value": value, "failed": failed})
    return out


__all__ = ["Gate", "OPS", "evaluate", "known_hint", "lookup", "parse_gate", "parse_gates"]
