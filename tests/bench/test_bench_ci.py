"""Bench as a CI step runs it (issue 19): prompts that fit a model the bench knows nothing
about, per-prompt output lengths from a dataset, progress and warnings in a log that is
not a terminal, failures that show and exit codes that tell them apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from llmdeploy_cli.bench.plot import Series, failed_title, legend_label
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.cli.bench_tables import sweep_table
from tests.conftest import ROOT
from tests.standins.timed_server import standin


def stamps(url: str) -> dict:
    return httpx.get(url.removesuffix("/v1") + "/stamps", timeout=10).json()


def test_word_prompts_are_sized_by_the_servers_token_counts(capsys):
    """No tokenizer, no max_model_len listed, a model that makes 4 tokens of a word and
    takes 300: 128 words would be 522 tokens and refused. Two probes measure the server's
    count, the prompts are remade to ~128 tokens, the run passes and says how."""
    args = ("--tokens-per-word", "4", "--max-context", "300", "--ttft-ms", "1", "--itl-ms", "1")
    with standin(*args) as (url, _):
        code = main(["bench", "--url", url, "-n", "4", "--output-len", "8", "--json"])
        seen = stamps(url)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    doc = json.loads(cap.out)
    assert doc["completed"] == 4
    sizing = doc["llmctl"]["workload"]["sizing"]
    assert sizing["by"] == "server-usage"
    assert sizing["tokens_per_word"] == 4.0 and sizing["template_tokens"] == 10.0
    assert doc["total_input_tokens"] == 4 * (32 * 4 + 10)  # 32 words = 128 tokens each
    assert "sized by the server's own token counts" in cap.err and "32 words" in cap.err
    assert sum(k.startswith("llmctl-size-") for k in seen) == 2


def test_without_usage_counts_prompts_stay_words_and_say_so(capsys):
    """A server whose counts do not move with the prompt: nothing to size by."""
    with standin("--ttft-ms", "1", "--itl-ms", "1") as (url, _):
        code = main(["bench", "--url", url, "-n", "2", "--input-len", "8", "--json"])
    cap = capsys.readouterr()
    assert code == 0
    doc = json.loads(cap.out)
    assert doc["llmctl"]["workload"]["sizing"] == {"by": "words"}
    assert "input lengths in tokens are approximate" in cap.err


def test_dataset_output_lengths_are_honoured_unless_output_len_is_given(tmp_path, capsys):
    ds = tmp_path / "d.jsonl"
    ds.write_text(
        '{"prompt": "one two three", "output_len": 3}\n{"prompt": "four five", "max_tokens": 5}\n'
    )
    share = tmp_path / "s.json"
    share.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "hi there"},
                        {"from": "gpt", "value": "a b c d e f"},
                    ]
                }
            ]  # fmt: skip
        )
    )
    with standin("--ttft-ms", "1", "--itl-ms", "1") as (url, _):
        base = ["bench", "--url", url, "-c", "1", "--no-force-output-len"]
        assert main([*base, "--dataset", str(ds), "-n", "2"]) == 0
        first = stamps(url)
        assert main([*base, "--dataset", str(share), "-n", "1"]) == 0
        second = stamps(url)
        assert main([*base, "--dataset", str(ds), "-n", "2", "--output-len", "9"]) == 0
        third = stamps(url)
    measured = lambda s: sorted(  # noqa: E731
        v["max_tokens"] for k, v in s.items() if "check" not in k and "size" not in k
    )
    assert measured(first) == [3, 5]  # each prompt's own length, not 128
    # request ids are per second, a later run may reuse one: new stamps are what changed
    new = {k: v for k, v in second.items() if first.get(k) != v}
    assert measured(new) == [6]  # ShareGPT: the reply's length (6 words, no tokenizer)
    newer = {k: v for k, v in third.items() if second.get(k) != v}
    assert measured(newer) == [9, 9]  # --output-len given: it wins


def test_progress_lines_and_warnings_in_a_log_that_is_not_a_terminal(tmp_path):
    with standin("--ttft-ms", "100", "--itl-ms", "20", "--fail-every", "5") as (url, _):
        r = subprocess.run(
            [sys.executable, "-m", "llmdeploy_cli", "bench", "--url", url, "-n", "20",
             "-c", "2", "--output-len", "5", "--input-len", "4"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT), "LLMCTL_BENCH_PROGRESS_S": "0.3"},
        )  # fmt: skip
    lines = r.stderr.splitlines()
    progress = [ln for ln in lines if ln.startswith("bench: ") and " done, " in ln]
    assert len(progress) >= 2, r.stderr
    assert "/20 done" in progress[-1] and "failed" in progress[-1] and "req/s" in progress[-1]
    # the first failure is said when it happens, before the final summary's error line
    warned = next(i for i, ln in enumerate(lines) if "a request failed (http_500)" in ln)
    final = next(i for i, ln in enumerate(lines) if ln.startswith("error: "))
    assert warned < final
    assert r.returncode == 7, r.stderr  # ran, 4 of 20 failed
    assert "4 of 20 requests failed" in r.stderr


def _point(conc: int, completed: int, failed: int) -> dict:
    return {
        "max_concurrency": conc,
        "request_rate": "inf",
        "endpoint_type": "openai-chat",
        "completed": completed,
        "failed": failed,
        "llmctl": {"failures": {"http_500": failed} if failed else {}},
    }


def test_failures_show_in_the_sweep_table_and_the_plot():
    doc = {
        "sweep": {"parameter": "concurrency", "values": [1, 4]},
        "points": [_point(1, 100, 0), _point(4, 22, 278)],
    }
    rows = sweep_table(doc).splitlines()
    row4 = next(r for r in rows if r.strip().startswith("4 "))
    assert "278/300 FAILED (http_500 x278)" in row4
    assert "FAILED" not in next(r for r in rows if r.strip().startswith("1 "))
    ok = Series("concurrency=1", doc["points"][0], [1.0], [], [])
    bad = Series("concurrency=4", doc["points"][1], [1.0], [], [])
    assert legend_label(ok, 1) == "1"
    assert legend_label(bad, 1) == "4 (278/300 FAILED)"
    assert "278 of 400 requests FAILED" in failed_title("t", [ok, bad])
    assert failed_title("t", [ok]) == "t"


# -- a baseline gate that respects run-to-run noise (item 8) ----------------------------------


def _result(ttfts: list[float]) -> dict:
    from llmdeploy_cli.bench.metrics import percentile

    return {
        "completed": len(ttfts),
        "p99_ttft_ms": percentile(ttfts, 99),
        "llmctl": {"samples": {"ttft_ms": ttfts}},
    }


def _draw(seed: int, n: int, scale: float = 1.0) -> list[float]:
    import random

    rng = random.Random(seed)
    return [scale * 100.0 * rng.lognormvariate(0, 0.5) for _ in range(n)]


def test_two_runs_of_one_distribution_pass_a_p99_gate_that_numbers_alone_fail():
    from llmdeploy_cli.bench.compare import parse_compare_gate

    gate = parse_compare_gate("p99_ttft_ms>+10%", ["p99_ttft_ms"])
    base, same = _result(_draw(1, 100)), _result(_draw(2, 100))
    # the two numbers differ by more than 10 % by chance alone ...
    assert same["p99_ttft_ms"] > 1.10 * base["p99_ttft_ms"]
    d = gate.detail(base, same)
    # ... and the interval of the change says that is within the noise
    assert d["statistic"] == "bootstrap" and d["failed"] is False
    assert d["interval"][0] < 10
    assert d["tail"] == 1 and d["needed"] == 1000
    # a real regression (every request 60 % slower) fails it
    slow = _result(_draw(2, 300, scale=1.6))
    d = gate.detail(_result(_draw(1, 300)), slow)
    assert d["failed"] is True and d["interval"][0] > 10
    # without samples on one side: two numbers compared, and said so
    bare = {k: v for k, v in same.items() if k != "llmctl"}
    d = gate.detail(base, bare)
    assert d["statistic"] == "point" and d["failed"] is True and d["no_samples"] is True


def test_bench_baseline_gate_on_real_runs(tmp_path, capsys):
    """Saved results keep per-request samples; the same server passes the +10 % gate,
    a server 4x slower to the first token fails it."""
    base = tmp_path / "base.json"
    args = ["-n", "30", "-c", "2", "--input-len", "4", "--output-len", "4"]
    with standin("--ttft-ms", "20", "--itl-ms", "1") as (url, _):
        assert main(["bench", "--url", url, *args, "--save-result", str(base)]) == 0
        saved = json.loads(base.read_text())
        assert len(saved["llmctl"]["samples"]["runs"][0]["ttft_ms"]) == 30
        gate = ["--baseline", str(base), "--fail-if", "p99_ttft_ms>+10%"]
        assert main(["bench", "--url", url, *args, *gate]) == 0
    capsys.readouterr()
    with standin("--ttft-ms", "80", "--itl-ms", "1") as (url, _):
        assert main(["bench", "--url", url, *args, *gate]) == 6
    err = capsys.readouterr().err
    assert "p99_ttft_ms>+10%: failed" in err and "99% interval" in err


def _runs(*runs: list[float]) -> dict:
    from llmdeploy_cli.bench.metrics import percentile

    pooled = [v for r in runs for v in r]
    return {
        "completed": len(pooled),
        "p99_ttft_ms": percentile(pooled, 99),
        "llmctl": {"samples": {"runs": [{"ttft_ms": list(r)} for r in runs]}},
    }


def test_repeat_runs_carry_the_run_to_run_spread_into_the_gate():
    """One quiet baseline run against a candidate run on a busier machine: a regression by
    any within-run statistic. Three baseline runs, one of them busy as well: the spread
    the runs show covers the candidate, and the gate passes."""
    from llmdeploy_cli.bench.compare import parse_compare_gate

    gate = parse_compare_gate("p99_ttft_ms>+10%", ["p99_ttft_ms"])
    quiet = [_draw(s, 100) for s in (1, 2)]
    busy = [_draw(s, 100, scale=1.5) for s in (3, 4, 5)]
    one = gate.detail(_runs(quiet[0]), _runs(busy[0]))
    assert one["failed"] is True and one["runs"] == [1, 1]
    three = gate.detail(_runs(quiet[0], quiet[1], busy[1]), _runs(busy[0], busy[2], quiet[1]))
    assert three["failed"] is False and three["runs"] == [3, 3]
    assert three["interval"][0] < 10 < three["interval"][1]


def test_repeat_merges_k_runs_into_one_result(tmp_path, capsys):
    out = tmp_path / "r.json"
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        code = main(["bench", "--url", url, "-n", "6", "-c", "2", "--input-len", "4",
                     "--output-len", "3", "--repeat", "3", "--save-result", str(out)])  # fmt: skip
        seen = stamps(url)
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["completed"] == 18 and doc["num_prompts"] == 18
    assert [len(r["ttft_ms"]) for r in doc["llmctl"]["samples"]["runs"]] == [6, 6, 6]
    rep = doc["llmctl"]["repeat"]
    assert rep["runs"] == 3 and [p["completed"] for p in rep["per_run"]] == [6, 6, 6]
    assert doc["duration"] == sum(p["duration"] for p in rep["per_run"])
    # one check request for the three runs
    assert sum("check" in k for k in seen) == 1
    assert "(run 3/3)" not in capsys.readouterr().out
