"""Bench metrics exactly as docs/design.md §6, under `vllm bench serve --save-result` key names.

Pure functions over per-request records (no numpy, no I/O), so every number here can be
checked by hand in tests.

- TTFT: first chunk carrying content, reasoning or tool calls, minus the send time. A
  role-only first chunk does not count (vLLM stamps TTFT there; we keep that time too,
  as `llmctl.first_chunk_ms`).
- ITL: gaps between consecutive content chunks, pooled over all requests.
- TPOT: (E2E - TTFT) / (output_tokens - 1), for requests with more than one token.
- E2E: send time to the last chunk that carried a choice (as vLLM).
- Percentiles by linear interpolation between closest ranks (numpy's default).
- Failed requests are counted by class and never enter a latency.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PERCENTILES = (50, 90, 95, 99)
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
GOODPUT_KEYS = ("ttft", "tpot", "e2el")


@dataclass
class RequestRecord:
    """What the client measured for one request. Times are seconds on time.monotonic()."""

    index: int
    due: float = 0.0  # when the schedule wanted it sent
    slot: float = 0.0  # when a concurrency slot was free (== due without a cap)
    sent: float = 0.0  # when the client started the request (TTFT and E2E count from here)
    written: float | None = None  # when its bytes were handed to the socket
    ok: bool = False
    error_class: str | None = None  # connect, timeout, http_404, http_500, disconnected, ...
    error: str | None = None
    status: int | None = None
    first_chunk: float | None = None  # first SSE data chunk with a choice (maybe role-only)
    first_content: float | None = None  # first chunk with content/reasoning/tool calls
    content_times: list[float] = field(default_factory=list)
    last_choice: float | None = None  # last chunk carrying a choice
    done: float | None = None  # stream closed
    output_tokens: int = 0
    token_source: str | None = None  # usage | tokenizer | chunks
    prompt_tokens: int = 0
    prompt_source: str | None = None  # usage | local
    text: str = ""
    kinds: set[str] = field(default_factory=set)  # content, reasoning, tool_calls
    finish_reason: str | None = None
    request_id: str | None = None
    inputs: int = 0  # embeddings: texts in this request's batch

    # -- derived, in seconds -----------------------------------------------------------------
    @property
    def ttft(self) -> float | None:
        return None if self.first_content is None else self.first_content - self.sent

    @property
    def first_chunk_ttft(self) -> float | None:
        return None if self.first_chunk is None else self.first_chunk - self.sent

    @property
    def e2el(self) -> float | None:
        end = self.last_choice if self.last_choice is not None else self.done
        return None if end is None else end - self.sent

    @property
    def itls(self) -> list[float]:
        t = self.content_times
        return [b - a for a, b in zip(t, t[1:], strict=False)]

    @property
    def tpot(self) -> float | None:
        """None when the request made one token or fewer (no decode phase)."""
        if self.ttft is None or self.e2el is None or self.output_tokens <= 1:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)

    @property
    def send_lag(self) -> float:
        """How late the request went out, after it was due and a slot was free.

        Measured to the moment its bytes were handed to the socket (when known), so the
        time a busy event loop holds a request inside the client counts as lag, not only
        the scheduler's.
        """
        out = self.written if self.written is not None else self.sent
        return max(0.0, out - max(self.due, self.slot))

    @property
    def queue_time(self) -> float:
        """Time waiting for a concurrency slot after the request was due."""
        return max(0.0, self.slot - self.due)


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks: rank = p/100 * (n - 1) (numpy default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    xs = sorted(values)
    rank = (len(xs) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    frac = rank - lo
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def std(values: Sequence[float]) -> float:
    """Population standard deviation (numpy's default, ddof=0), as vLLM reports."""
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / len(values))


def summarize(name: str, seconds: Sequence[float], percentiles=PERCENTILES) -> dict:
    """mean_/median_/std_/pNN_ keys in milliseconds; None for each when there is no value."""
    out: dict[str, float | None] = {}
    ms = [s * 1000.0 for s in seconds]
    out[f"mean_{name}_ms"] = mean(ms) if ms else None
    out[f"median_{name}_ms"] = percentile(ms, 50) if ms else None
    out[f"std_{name}_ms"] = std(ms) if ms else None
    for p in percentiles:
        out[f"p{_pword(p)}_{name}_ms"] = percentile(ms, p) if ms else None
    return out


def _pword(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


# -- goodput ----------------------------------------------------------------------------------


def parse_goodput(items: Iterable[str]) -> dict[str, float]:
    """`ttft:500 tpot:50 e2el:2000`, or comma-separated (ms) -> {"ttft": 500.0, ...}.

    Raises ValueError for an unknown key, a non-number or a negative limit.
    """
    slo: dict[str, float] = {}
    for raw in items:
        for item in raw.replace(",", " ").split():
            name, sep, value = item.partition(":")
            name = name.strip().lower()
            if not sep or name not in GOODPUT_KEYS:
                raise ValueError(
                    f"bad --goodput {item!r}: use KEY:MS with KEY one of {', '.join(GOODPUT_KEYS)}"
                )
            try:
                ms = float(value)
            except ValueError:
                raise ValueError(f"bad --goodput {item!r}: {value!r} is not a number") from None
            if ms < 0 or math.isnan(ms):
                raise ValueError(f"bad --goodput {item!r}: the limit must be >= 0 ms")
            slo[name] = ms
    return slo


def is_good(r: RequestRecord, slo: dict[str, float]) -> bool:
    """A completed request meets every SLO (value <= limit). TPOT of a one-token request is 0."""
    values = {
        "ttft": r.ttft,
        "tpot": r.tpot if r.tpot is not None else 0.0,
        "e2el": r.e2el,
    }
    return all(values[k] is not None and values[k] * 1000.0 <= ms for k, ms in slo.items())


# -- the whole run ----------------------------------------------------------------------------


def peak_output_rate(records: Sequence[RequestRecord]) -> tuple[float, int]:
    """(most content chunks in one 1-s bucket, most requests in flight at once)."""
    ok = [r for r in records if r.ok and r.e2el is not None]
    if not ok:
        return 0.0, 0
    t0 = min(r.sent for r in ok)
    buckets: Counter[int] = Counter()
    for r in ok:
        for t in r.content_times:
            buckets[int(t - t0)] += 1
    events = sorted([(r.sent, 1) for r in ok] + [(r.sent + r.e2el, -1) for r in ok])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return float(max(buckets.values()) if buckets else 0), peak


def compute(
    records: Sequence[RequestRecord],
    duration: float,
    *,
    goodput: dict[str, float] | None = None,
    percentiles=PERCENTILES,
    queue_metrics: bool = False,
) -> tuple[dict, dict]:
    """(vLLM-named result keys, llmctl-only fields) for the measured (non-warmup) requests."""
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok and r.error_class != "interrupted"]
    dur = duration if duration > 0 else float("nan")
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(r.output_tokens for r in ok)

    def rate(x: float) -> float | None:
        return None if math.isnan(dur) else x / dur

    ttfts = [r.ttft for r in ok if r.ttft is not None]
    tpots = [r.tpot for r in ok if r.tpot is not None]
    itls = [g for r in ok for g in r.itls]
    e2els = [r.e2el for r in ok if r.e2el is not None]
    peak_tok, peak_conc = peak_output_rate(ok)

    res: dict = {
        "duration": duration,
        "completed": len(ok),
        "failed": len(failed),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": rate(len(ok)),
        "request_goodput": rate(sum(is_good(r, goodput) for r in ok)) if goodput else None,
        "output_throughput": rate(total_out),
        "total_token_throughput": rate(total_in + total_out),
        "max_output_tokens_per_s": peak_tok,
        "max_concurrent_requests": peak_conc,
    }
    res.update(summarize("ttft", ttfts, percentiles))
    res.update(summarize("tpot", tpots, percentiles))
    res.update(summarize("itl", itls, percentiles))
    res.update(summarize("e2el", e2els, percentiles))
    if queue_metrics:
        res.update(summarize("client_queue_time", [r.queue_time for r in ok], percentiles))

    sent = [r for r in records if r.sent > 0]
    lags = [r.send_lag for r in sent]
    extra = {
        "ttft_definition": "first chunk carrying content, reasoning or tool calls",
        "first_chunk": summarize("first_chunk", [r.first_chunk_ttft for r in ok], percentiles),
        "send_lag": {
            **summarize("send_lag", lags, percentiles),
            "max_send_lag_ms": max(lags) * 1000.0 if lags else None,
        },
        "token_source": dict(Counter(r.token_source for r in ok if r.token_source)),
        "prompt_token_source": dict(Counter(r.prompt_source for r in ok if r.prompt_source)),
        "failures": dict(Counter(r.error_class for r in failed)),
        "failure_examples": _examples(failed),
        "interrupted_requests": sum(r.error_class == "interrupted" for r in records),
        "seen": dict(Counter(k for r in ok for k in r.kinds)),
        "finish_reasons": dict(Counter(r.finish_reason or "none" for r in ok)),
    }
    return res, extra


def compute_embeddings(
    records: Sequence[RequestRecord], duration: float, *, percentiles=PERCENTILES
) -> tuple[dict, dict]:
    """(vLLM-named keys, llmctl-only fields) for an embeddings run.

    vLLM's pooling results carry completed, failed, total_input_tokens, request_throughput,
    total_token_throughput and the e2el statistics; inputs (texts) per second is llmctl's
    own, under `embedding`.
    """
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok and r.error_class != "interrupted"]
    dur = duration if duration > 0 else float("nan")

    def rate(x: float) -> float | None:
        return None if math.isnan(dur) else x / dur

    tokens = sum(r.prompt_tokens for r in ok)
    inputs = sum(r.inputs for r in ok)
    res: dict = {
        "duration": duration,
        "completed": len(ok),
        "failed": len(failed),
        "total_input_tokens": tokens,
        "request_throughput": rate(len(ok)),
        "total_token_throughput": rate(tokens),
        **summarize("e2el", [r.e2el for r in ok if r.e2el is not None], percentiles),
    }
    lags = [r.send_lag for r in records if r.sent > 0]
    extra = {
        "embedding": {"total_inputs": inputs, "input_throughput": rate(inputs)},
        "send_lag": {
            **summarize("send_lag", lags, percentiles),
            "max_send_lag_ms": max(lags) * 1000.0 if lags else None,
        },
        "prompt_token_source": dict(Counter(r.prompt_source for r in ok if r.prompt_source)),
        "failures": dict(Counter(r.error_class for r in failed)),
        "failure_examples": _examples(failed),
        "interrupted_requests": sum(r.error_class == "interrupted" for r in records),
    }
    return res, extra


def _examples(failed: Sequence[RequestRecord]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in failed:
        if r.error_class and r.error_class not in out:
            out[r.error_class] = (r.error or "")[:300]
    return out


def result_keys(percentiles=PERCENTILES, *, queue_metrics: bool = True) -> list[str]:
    """Every numeric top-level key a result can carry (for --fail-if checks)."""
    res, _ = compute(
        [], 1.0, goodput={"ttft": 1.0}, percentiles=percentiles, queue_metrics=queue_metrics
    )
    return list(res)


def embedding_result_keys(percentiles=PERCENTILES) -> list[str]:
    """Every numeric top-level key an embeddings result can carry."""
    return list(compute_embeddings([], 1.0, percentiles=percentiles)[0])


__all__ = [
    "PERCENTILES",
    "RequestRecord",
    "compute",
    "compute_embeddings",
    "embedding_result_keys",
    "is_good",
    "mean",
    "parse_goodput",
    "percentile",
    "result_keys",
    "std",
    "summarize",
]
