"""`llmctl bench compare`: the headline figures of several results side by side, with deltas.

A result file is one run (`--save-result`) or a sweep (`{"sweep": ..., "points": [...]}`).
Points are matched by their sweep label (`concurrency=4`); two single runs always match.
Deltas are against the baseline (the first file, or `--baseline`): absolute and in percent.

Regression gates (`--fail-if`) extend bench's `KEY OP NUMBER`:
- `p99_ttft_ms>+10%`: fails when the candidate is more than 10 % above the baseline
  (a number ending in `%` compares the relative change, in percent);
- `p99_ttft_ms>+5`: fails when it is more than 5 (ms) above the baseline (a signed number
  compares the absolute change);
- `output_throughput<-5%`: fails when throughput fell by more than 5 %;
- `failed>0`: an unsigned number compares the candidate's own value, as in `llmctl bench`.
Every candidate (every file but the baseline) and every matched point is checked; a value
missing on either side fails its gate, since "no data" must not pass CI. A change gate on a
latency statistic of results that keep their per-request samples is judged on a bootstrap
interval of the change, not on two noisy numbers (bench/noise.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from llmdeploy_cli.bench.gate import _GATE, OPS, known_hint, lookup
from llmdeploy_cli.errors import UsageError

LATENCIES = ("ttft", "tpot", "itl", "e2el")
HEADLINE = (
    "completed",
    "failed",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "llmctl.embedding.input_throughput",
    *(f"{s}_{m}_ms" for m in LATENCIES for s in ("mean", "median", "p99")),
)


@dataclass
class ResultFile:
    path: Path
    parameter: str | None  # the swept setting, None for a single run
    points: list[tuple[str, dict]]  # (label, result)

    @property
    def name(self) -> str:
        return self.path.name


def point_label(parameter: str | None, result: dict) -> str:
    if parameter is None:
        return ""
    value = result.get("max_concurrency" if parameter == "concurrency" else "request_rate")
    return f"{parameter}={_num(value)}"


def _num(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def load(path: Path) -> ResultFile:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path} is not a bench result")
    if isinstance(doc.get("points"), list):
        param = (doc.get("sweep") or {}).get("parameter")
        pts = [(point_label(param, p), p) for p in doc["points"] if isinstance(p, dict)]
        return ResultFile(Path(path), param, pts)
    if "completed" not in doc:
        raise UsageError(
            f"{path} is not a bench result (no 'completed' key)",
            hint="compare files written by llmctl bench --save-result (or vllm bench serve)",
        )
    return ResultFile(Path(path), None, [("", doc)])


def match(base: ResultFile, other: ResultFile) -> list[tuple[str, dict | None, dict]]:
    """(label, baseline point or None, candidate point) for each candidate point."""
    if len(base.points) == 1 and len(other.points) == 1:
        return [(other.points[0][0] or base.points[0][0], base.points[0][1], other.points[0][1])]
    by_label = dict(base.points)
    return [(label, by_label.get(label), res) for label, res in other.points]


def delta(base, value) -> tuple[float | None, float | None]:
    """(absolute change, change in percent) from base to value; None where undefined."""
    if not _is_num(base) or not _is_num(value):
        return None, None
    d = value - base
    if base == 0:
        return d, (0.0 if d == 0 else math.copysign(math.inf, d))
    return d, 100.0 * d / abs(base)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def headline_keys(files: list[ResultFile]) -> list[str]:
    """The headline keys that have a value in at least one point of one file."""
    return [
        k for k in HEADLINE if any(lookup(res, k) is not None for f in files for _, res in f.points)
    ]


def table(files: list[ResultFile], baseline: int = 0) -> list[dict]:
    """One section per point label of the baseline (and any extra labels in candidates)."""
    base = files[baseline]
    keys = headline_keys(files)
    labels = [label for label, _ in base.points]
    for f in files:
        for label, _ in f.points:
            if label not in labels:
                labels.append(label)
    single = all(len(f.points) == 1 for f in files)
    sections = []
    for label in labels:
        per_file = []
        for f in files:
            pts = dict(f.points)
            per_file.append(f.points[0][1] if single else pts.get(label))
        b = per_file[baseline]
        rows = []
        for k in keys:
            values = [lookup(p, k) if p is not None else None for p in per_file]
            changes = [delta(lookup(b, k) if b else None, v) for v in values]
            rows.append(
                {
                    "key": k,
                    "values": values,
                    "delta": [c[0] for c in changes],
                    "delta_pct": [c[1] for c in changes],
                }
            )
        sections.append({"label": label, "rows": rows})
    return sections


# -- regression gates -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareGate:
    key: str
    op: str
    limit: float
    mode: str  # value | delta | pct
    text: str

    def check(self, base: dict | None, cand: dict) -> tuple[bool, float | None]:
        """(failed, the compared quantity). Missing data fails."""
        d = self.detail(base, cand)
        return d["failed"], d["value"]

    def detail(self, base: dict | None, cand: dict) -> dict:
        """{"failed", "value", "statistic"} and, for a change of a latency statistic with
        per-request samples on both sides, the bootstrap "interval" the verdict came from
        (bench/noise.py): it fails only when the whole interval is past the limit."""
        from llmdeploy_cli.bench import noise

        value = lookup(cand, self.key)
        if self.mode == "value":
            got = value if _is_num(value) else None
        else:
            d, pct = delta(lookup(base, self.key) if base else None, value)
            got = d if self.mode == "delta" else pct
        if got is None:
            return {"failed": True, "value": None, "statistic": "point"}
        out: dict = {"value": float(got), "statistic": "point"}
        iv = None
        if self.mode != "value" and self.op not in ("==",):
            iv = noise.interval(self.key, base, cand, pct=self.mode == "pct")
        if iv is None:
            out["failed"] = bool(OPS[self.op](got, self.limit))
            if self.mode != "value" and noise.statistic(self.key) is not None:
                out["no_samples"] = True  # a noisy latency compared as two numbers
            return out
        out.update(failed=noise.beyond(self.op, self.limit, iv), statistic="bootstrap")
        out["interval"] = [iv["low"], iv["high"]]
        out["samples"] = [iv["n_base"], iv["n_cand"]]
        out["runs"] = iv["runs"]
        tail = noise.tail_count(self.key, min(iv["n_base"], iv["n_cand"]))
        if tail is not None:
            out["tail"] = tail
            out["needed"] = noise.needed(self.key)
        return out


def parse_compare_gate(text: str, known: list[str]) -> CompareGate:
    m = _GATE.match(text)
    if not m:
        raise UsageError(
            f"bad --fail-if {text!r}",
            hint="write KEY OP NUMBER, e.g. 'p99_ttft_ms>+10%' (change against the baseline "
            "in percent), 'p99_ttft_ms>+5' (absolute change), 'failed>0' (the value itself)",
        )
    key, op, raw = m.groups()
    mode = "pct" if raw.endswith("%") else ("delta" if raw[:1] in "+-" else "value")
    try:
        limit = float(raw.rstrip("%"))
    except ValueError:
        raise UsageError(f"bad --fail-if {text!r}: {raw!r} is not a number") from None
    if key not in known and not key.startswith("llmctl."):
        raise UsageError(f"--fail-if: unknown result key '{key}'", hint=known_hint(key, known))
    return CompareGate(key, op, limit, mode, text.strip())


def evaluate(gates: list[CompareGate], files: list[ResultFile], baseline: int = 0) -> list[dict]:
    out = []
    base = files[baseline]
    for i, f in enumerate(files):
        if i == baseline:
            continue
        for label, b, cand in match(base, f):
            for g in gates:
                out.append(
                    {
                        "gate": g.text,
                        "file": str(f.path),
                        "point": label or None,
                        "key": g.key,
                        "mode": g.mode,
                        **g.detail(b, cand),
                    }
                )
    return out


__all__ = [
    "HEADLINE",
    "CompareGate",
    "ResultFile",
    "delta",
    "evaluate",
    "load",
    "match",
    "parse_compare_gate",
    "point_label",
    "table",
]
