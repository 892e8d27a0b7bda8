"""Bench metrics, schedule and gates: hand-checked reference values and properties."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmdeploy_cli.bench.gate import evaluate, parse_gate
from llmdeploy_cli.bench.metrics import (
    RequestRecord,
    compute,
    is_good,
    parse_goodput,
    percentile,
    result_keys,
    std,
)
from llmdeploy_cli.bench.schedule import arrivals, schedule
from llmdeploy_cli.errors import UsageError


# -- percentiles: linear interpolation between closest ranks (numpy's default) ---------------
@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 90, 3.7),  # rank 2.7 -> 3 + 0.7 * 1
        ([1, 2, 3, 4], 99, 3.97),
        ([1, 2, 3, 4], 0, 1),
        ([1, 2, 3, 4], 100, 4),
        ([10], 99, 10),
        ([15, 20, 35, 40, 50], 40, 29.0),  # rank 1.6 -> 20 + 0.6 * 15
        ([3, 1, 2], 50, 2),  # unsorted input
        (list(range(1, 101)), 95, 95.05),  # rank 94.05
    ],
)
def test_percentile_reference_values(values, p, expected):
    assert percentile(values, p) == pytest.approx(expected)


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=50), st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotone_and_bounded(xs, p1, p2):
    lo, hi = sorted((p1, p2))
    a, b = percentile(xs, lo), percentile(xs, hi)
    assert min(xs) - 1e-6 <= a <= b + 1e-6 <= max(xs) + 2e-6


@given(st.lists(finite, min_size=1, max_size=50))
def test_median_and_std_match_statistics(xs):
    assert percentile(xs, 50) == pytest.approx(statistics.median(xs), abs=1e-6)
    assert std(xs) == pytest.approx(statistics.pstdev(xs), abs=1e-6)


# -- per-request definitions -------------------------------------------------------------------
def rec(i=0, sent=0.0, first_chunk=0.01, content=(0.1, 0.12, 0.15, 0.2), out=4, **kw):
    r = RequestRecord(i, sent=sent, ok=True, output_tokens=out, prompt_tokens=10, **kw)
    r.first_chunk = first_chunk
    r.content_times = list(content)
    r.first_content = content[0] if content else None
    r.last_choice = content[-1] if content else None
    r.done = r.last_choice
    r.token_source = "usage"
    return r


def test_ttft_itl_tpot_e2e_of_one_request():
    r = rec()
    assert r.ttft == pytest.approx(0.1)  # the role-only first chunk at 0.01 does not count
    assert r.first_chunk_ttft == pytest.approx(0.01)
    assert r.itls == pytest.approx([0.02, 0.03, 0.05])
    assert r.e2el == pytest.approx(0.2)
    assert r.tpot == pytest.approx((0.2 - 0.1) / 3)


def test_tpot_undefined_for_one_token():
    assert rec(content=(0.1,), out=1).tpot is None


def test_send_lag_and_queue_time():
    r = RequestRecord(0, due=1.0, slot=1.5, sent=1.502)
    assert r.queue_time == pytest.approx(0.5)
    assert r.send_lag == pytest.approx(0.002)


def test_compute_pools_itl_and_keeps_failures_out():
    a = rec(0)
    b = rec(1, sent=1.0, first_chunk=1.01, content=(1.3, 1.4), out=2)
    bad = RequestRecord(2, sent=0.5, error_class="http_500", error="boom")
    bad.done = 0.51
    res, extra = compute([a, b, bad], duration=2.0, goodput={"ttft": 150})
    assert res["completed"] == 2 and res["failed"] == 1
    assert res["total_output_tokens"] == 6 and res["total_input_tokens"] == 20
    assert res["request_throughput"] == pytest.approx(1.0)
    assert res["output_throughput"] == pytest.approx(3.0)
    assert res["total_token_throughput"] == pytest.approx(13.0)
    # ITL pooled over both requests: 20, 30, 50 and 100 ms
    assert res["mean_itl_ms"] == pytest.approx(50.0)
    assert res["median_itl_ms"] == pytest.approx(40.0)
    assert res["mean_ttft_ms"] == pytest.approx((100 + 300) / 2)
    assert res["mean_e2el_ms"] == pytest.approx((200 + 400) / 2)
    assert res["request_goodput"] == pytest.approx(0.5)  # only a meets ttft <= 150 ms
    assert extra["failures"] == {"http_500": 1}
    assert extra["failure_examples"] == {"http_500": "boom"}
    assert extra["first_chunk"]["mean_first_chunk_ms"] == pytest.approx(10.0)
    assert extra["token_source"] == {"usage": 2}


def test_no_completed_request_gives_null_latencies():
    res, _ = compute([], 1.0)
    assert res["completed"] == 0 and res["p99_ttft_ms"] is None


def test_vllm_key_names_present():
    keys = set(result_keys())
    for k in (
        "completed", "failed", "total_input_tokens", "total_output_tokens",
        "request_throughput", "request_goodput", "output_throughput",
        "total_token_throughput", "duration", "mean_ttft_ms", "median_ttft_ms",
        "std_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
        "p99_itl_ms", "median_e2el_ms", "p50_itl_ms", "p90_e2el_ms", "p95_tpot_ms",
        "max_output_tokens_per_s", "max_concurrent_requests",
    ):  # fmt: skip
        assert k in keys, k


# -- goodput -----------------------------------------------------------------------------------
def test_parse_goodput():
    assert parse_goodput(["ttft:500 tpot:50", "e2el:2000"]) == {
        "ttft": 500.0, "tpot": 50.0, "e2el": 2000.0
    }  # fmt: skip
    for bad in ("ttft", "itl:5", "ttft:x", "ttft:-1"):
        with pytest.raises(ValueError):
            parse_goodput([bad])


def test_goodput_boundaries():
    r = rec()  # ttft 100 ms, tpot 33.3 ms, e2el 200 ms
    assert is_good(r, {"ttft": 100, "e2el": 200})  # equal to the limit is good
    assert not is_good(r, {"tpot": 33})
    assert is_good(rec(content=(0.1,), out=1), {"tpot": 0})  # one token: tpot 0


# -- gates -------------------------------------------------------------------------------------
KNOWN = result_keys()


@pytest.mark.parametrize(
    ("text", "value", "failed"),
    [
        ("p99_ttft_ms>500", 600.0, True),
        ("p99_ttft_ms>500", 500.0, False),
        ("p99_ttft_ms >= 500", 500.0, True),
        ("p99_ttft_ms<500", 499.0, True),
        ("p99_ttft_ms<=10", 11.0, False),
        ("p99_ttft_ms==3", 3.0, True),
        ("p99_ttft_ms>1", None, True),  # no value: the gate fails
    ],
)
def test_gates(text, value, failed):
    g = parse_gate(text, KNOWN)
    [check] = evaluate([g], {"p99_ttft_ms": value})
    assert check["failed"] is failed


def test_gate_llmctl_dotted_key():
    g = parse_gate("llmctl.send_lag.max_send_lag_ms>5", KNOWN)
    assert evaluate([g], {"llmctl": {"send_lag": {"max_send_lag_ms": 6}}})[0]["failed"]


def test_gate_unknown_key_says_close_keys():
    with pytest.raises(UsageError) as e:
        parse_gate("p99_tft_ms>5", KNOWN)
    assert "p99_ttft_ms" in e.value.hint


@pytest.mark.parametrize("text", ["p99_ttft_ms", "p99_ttft_ms>>5", "p99_ttft_ms>abc", ">5"])
def test_gate_syntax_errors(text):
    with pytest.raises(UsageError):
        parse_gate(text, KNOWN)


# -- schedule ----------------------------------------------------------------------------------
def test_poisson_rate_and_cv():
    it = arrivals(20.0, 1.0, seed=1)
    ts = [next(it) for _ in range(20001)]
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    m = statistics.fmean(gaps)
    assert m == pytest.approx(1 / 20.0, rel=0.03)
    assert statistics.pstdev(gaps) / m == pytest.approx(1.0, rel=0.05)  # exponential: CV 1


@pytest.mark.parametrize("b", [0.25, 4.0])
def test_gamma_burstiness_keeps_rate_changes_cv(b):
    it = arrivals(10.0, b, seed=2)
    ts = [next(it) for _ in range(20001)]
    gaps = [y - x for x, y in zip(ts, ts[1:], strict=False)]
    m = statistics.fmean(gaps)
    assert m == pytest.approx(0.1, rel=0.05)
    assert statistics.pstdev(gaps) / m == pytest.approx(1 / math.sqrt(b), rel=0.08)


@given(st.integers(2, 300), st.floats(0.5, 500), st.sampled_from([0.5, 1.0, 3.0]), st.integers())
@settings(max_examples=50, deadline=None)
def test_schedule_is_absolute_sorted_and_normalized(n, rate, b, seed):
    s = schedule(n, rate, b, seed)
    assert len(s) == n and s[0] == 0.0
    assert all(x <= y for x, y in zip(s, s[1:], strict=False))
    assert s[-1] == pytest.approx((n - 1) / rate, rel=1e-9)


def test_schedule_is_seeded_and_inf_rate_is_a_burst():
    assert schedule(50, 5.0, 1.0, 7) == schedule(50, 5.0, 1.0, 7)
    assert schedule(50, 5.0, 1.0, 7) != schedule(50, 5.0, 1.0, 8)
    assert schedule(5, math.inf) == [0.0] * 5
    assert schedule(0, 1.0) == []
    with pytest.raises(ValueError):
        next(arrivals(0.0))


latency = st.floats(min_value=0.001, max_value=5.0)


@given(
    st.lists(st.tuples(latency, st.lists(latency, min_size=1, max_size=6)), min_size=1,
             max_size=8),
    st.lists(st.sampled_from(["http_500", "connect", "disconnected", "timeout"]), max_size=5),
)  # fmt: skip
@settings(max_examples=60, deadline=None)
def test_failures_never_change_latencies(oks, failures):
    good = []
    for i, (ttft, gaps) in enumerate(oks):
        times = [ttft]
        for g in gaps:
            times.append(times[-1] + g)
        good.append(rec(i, first_chunk=ttft / 2, content=tuple(times), out=len(times)))
    bad = [
        RequestRecord(100 + i, sent=0.1, error_class=c, error="x") for i, c in enumerate(failures)
    ]
    base, _ = compute(good, 10.0)
    mixed, extra = compute(good + bad, 10.0)
    for k, v in base.items():
        if k.endswith("_ms") or k in ("completed", "total_output_tokens"):
            assert mixed[k] == v, k
    assert mixed["failed"] == len(failures)
    assert sum(extra["failures"].values()) == len(failures)
    # TPOT equals the mean gap of each request when every chunk is one token
    for r in good:
        if r.tpot is not None:
            assert r.tpot == pytest.approx(sum(r.itls) / len(r.itls))


def test_goodput_accepts_commas():
    assert parse_goodput(["ttft:1,e2el:2"]) == {"ttft": 1.0, "e2el": 2.0}
