"""Regression gates that respect run-to-run noise: a bootstrap interval on the change.

A latency percentile of one run is an estimate from that run's requests; two identical
runs differ by chance, and by a lot in the tail (the p99 of 20 requests is about the
slowest of them). A gate like `p99_ttft_ms>+10%` that compares two such estimates as exact
numbers fails at random. So every result keeps its per-request latencies
(`llmctl.samples.runs`: per run, TTFT, TPOT and E2E of each completed request, in ms), and
a change gate on a latency statistic (`mean_`, `median_`, `pNN_` of ttft/tpot/e2el)
resamples both sides (bootstrap, BOOT rounds, a fixed seed): first the runs (`--repeat
K` made K of them), then the requests within each chosen run. It fails only when the
whole one-sided 99 % interval of the change is past the limit: `>+10%` fails when even
the low end of the change is above +10 %.

Inside one run the bootstrap sees sampling noise only. A machine whose load changes
between runs moves latencies by more than that, and only several runs show it: with one
run a side, a load change between the two runs reads as a regression.

How many requests a percentile needs: the interval is narrow once about ten requests lie
beyond the percentile, i.e. 10 / (1 - p/100) requests: 100 for a p90, 1000 for a p99.
With fewer the interval is wide and only a large regression fails the gate; the check
says how many requests were beyond the percentile (`tail`).

A baseline without samples (written by an older llmctl, or by vllm bench serve) is
compared as numbers (`statistic: "point"`), as before.
"""

from __future__ import annotations

import math
import random
import re

from llmdeploy_cli.bench.metrics import mean, percentile

SAMPLED = ("ttft", "tpot", "e2el")
_KEY = re.compile(r"^(mean|median|p(\d+(?:\.\d+)?))_(ttft|tpot|e2el)_ms$")
BOOT = 2000  # bootstrap rounds (fewer for very large runs: BOOT_WORK values in all)
BOOT_WORK = 4_000_000
CONFIDENCE = 0.99  # one-sided: a CI gate fails only when it is sure (docs/bench.md)


def samples(records) -> dict[str, list[float]]:
    """One run's per-request latencies, as a result keeps them (ms, completed requests)."""
    ok = [r for r in records if r.ok]
    out: dict[str, list[float]] = {}
    for m in SAMPLED:
        vals = [getattr(r, m) for r in ok]
        out[f"{m}_ms"] = [round(v * 1000.0, 3) for v in vals if v is not None]
    return out


def statistic(key: str):
    """(metric, function of a list of values) for a gateable key, or None."""
    m = _KEY.match(key)
    if not m:
        return None
    kind, q, metric = m.groups()
    if kind == "mean":
        return metric, mean
    p = 50.0 if kind == "median" else float(q)
    return metric, lambda xs: percentile(xs, p)


def tail_count(key: str, n: int) -> int | None:
    """Requests beyond the key's percentile in a run of n (None for a mean)."""
    m = _KEY.match(key)
    if not m or m.group(1) == "mean":
        return None
    p = 50.0 if m.group(1) == "median" else float(m.group(2))
    return int(n * (1 - p / 100.0))


def needed(key: str) -> int | None:
    """Requests for about ten beyond the key's percentile."""
    m = _KEY.match(key)
    if not m or m.group(1) == "mean":
        return None
    p = 50.0 if m.group(1) == "median" else float(m.group(2))
    return math.ceil(10 / (1 - p / 100.0)) if p < 100 else None


def _samples_of(result: dict | None, metric: str) -> list[list[float]] | None:
    """Each run's values of `metric` (runs with none left out), or None when there are
    fewer than two values in all."""
    s = ((result or {}).get("llmctl") or {}).get("samples") or {}
    runs = s.get("runs") if isinstance(s.get("runs"), list) else [s]
    out = [
        r[f"{metric}_ms"]
        for r in runs
        if isinstance(r, dict) and isinstance(r.get(f"{metric}_ms"), list) and r[f"{metric}_ms"]
    ]
    return out if sum(len(v) for v in out) >= 2 else None


def _resample(runs: list[list[float]], rng: random.Random) -> list[float]:
    """Runs drawn with replacement, then each drawn run's requests with replacement."""
    out: list[float] = []
    for run in rng.choices(runs, k=len(runs)):
        out.extend(rng.choices(run, k=len(run)))
    return out


def interval(key: str, base: dict | None, cand: dict, pct: bool) -> dict | None:
    """The bootstrap interval of the change of `key` from base to cand (in percent when
    `pct`): {"low", "high", "rounds", "n_base", "n_cand"}; None without samples."""
    st = statistic(key)
    if st is None:
        return None
    metric, f = st
    b, c = _samples_of(base, metric), _samples_of(cand, metric)
    if b is None or c is None:
        return None
    nb, nc = sum(map(len, b)), sum(map(len, c))
    rounds = max(200, min(BOOT, BOOT_WORK // (nb + nc)))
    rng = random.Random(0)
    changes = []
    for _ in range(rounds):
        vb = f(_resample(b, rng))
        vc = f(_resample(c, rng))
        if pct:
            changes.append(100.0 * (vc - vb) / abs(vb) if vb else math.copysign(math.inf, vc))
        else:
            changes.append(vc - vb)
    alpha = (1 - CONFIDENCE) * 100
    return {
        "low": percentile(changes, alpha),
        "high": percentile(changes, 100 - alpha),
        "rounds": rounds,
        "n_base": nb,
        "n_cand": nc,
        "runs": [len(b), len(c)],
    }


def beyond(op: str, limit: float, iv: dict) -> bool:
    """Whether the whole interval is on the failing side of `limit`."""
    if op in (">", ">="):
        return iv["low"] > limit if op == ">" else iv["low"] >= limit
    if op in ("<", "<="):
        return iv["high"] < limit if op == "<" else iv["high"] <= limit
    return False  # ==, != on an interval: never a noise-proof failure


__all__ = ["BOOT", "CONFIDENCE", "beyond", "interval", "needed", "samples", "tail_count"]
