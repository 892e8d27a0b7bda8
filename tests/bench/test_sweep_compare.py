"""Bench part two: sweeps, compare (deltas and regression gates), plots, embeddings, workers."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from llmdeploy_cli.bench import compare as cmp
from llmdeploy_cli.bench.runner import BenchConfig, run_bench
from llmdeploy_cli.bench.workers import split_cap
from llmdeploy_cli.bench.workload import random_workload
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.errors import UsageError
from tests.standins.embed_server import embed_standin
from tests.standins.timed_server import standin


def bench(url, *args):
    return main(["bench", "--url", url, "--input-len", "4", "--output-len", "4", *args])


# -- sweeps -----------------------------------------------------------------------------------


def test_concurrency_sweep_one_table_one_file(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        code = bench(url, "-n", "6", "--concurrency", "1,3", "--save-result", str(out))
    assert code == 0
    text = capsys.readouterr().out
    assert "Sweep over concurrency" in text and "TTFT p99" in text
    doc = json.loads(out.read_text())
    assert doc["sweep"] == {"parameter": "concurrency", "values": [1, 3]}
    assert [p["max_concurrency"] for p in doc["points"]] == [1, 3]
    for p in doc["points"]:  # every point is a full result under vLLM's key names
        assert p["completed"] == 6 and p["failed"] == 0
        assert p["mean_ttft_ms"] > 0 and "p99_itl_ms" in p and "llmctl" in p
        assert p["total_output_tokens"] == 24


def test_request_rate_sweep_with_inf_and_gates_per_point(capsys):
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        code = bench(url, "-n", "4", "--request-rate", "50,inf", "--json",
                     "--fail-if", "p99_ttft_ms>100000")  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1
    assert doc["sweep"]["values"] == [50.0, "inf"]
    assert [p["request_rate"] for p in doc["points"]] == [50.0, "inf"]
    assert all(p["llmctl"]["gates"][0]["failed"] is False for p in doc["points"])


def test_sweeping_both_settings_is_a_usage_error(capsys):
    code = bench("http://127.0.0.1:9/v1", "--concurrency", "1,2", "--request-rate", "1,2")
    assert code == 2
    assert "one setting at a time" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--concurrency", "1,x"), ("--request-rate", "0,2")])
def test_bad_sweep_lists(flag, value, capsys):
    assert bench("http://127.0.0.1:9/v1", flag, value) == 2
    assert flag in capsys.readouterr().err


# -- compare ----------------------------------------------------------------------------------


def result(**kw) -> dict:
    base = {"completed": 100, "failed": 0, "request_throughput": 10.0,
            "output_throughput": 1000.0, "mean_ttft_ms": 100.0, "median_ttft_ms": 90.0,
            "p99_ttft_ms": 200.0, "median_tpot_ms": 20.0, "p99_e2el_ms": None,
            "max_concurrency": 4, "request_rate": "inf", "llmctl": {}}  # fmt: skip
    return {**base, **kw}


def write(tmp_path, name, doc) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def test_delta_absolute_and_percent():
    assert cmp.delta(200.0, 230.0) == (30.0, pytest.approx(15.0))
    assert cmp.delta(10.0, 9.0) == (-1.0, pytest.approx(-10.0))
    assert cmp.delta(0, 0) == (0, 0.0)
    assert cmp.delta(0, 3)[1] == math.inf
    assert cmp.delta(None, 3) == (None, None)


def test_compare_table_shows_deltas(tmp_path, capsys):
    a = write(tmp_path, "a.json", result())
    b = write(tmp_path, "b.json", result(p99_ttft_ms=230.0, output_throughput=900.0))
    assert main(["bench", "compare", a, b]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("p99_ttft_ms"))
    assert "200.00" in line and "230.00 (+30.00, +15.0%)" in line
    line = next(x for x in text.splitlines() if x.startswith("output_throughput"))
    assert "900.00 (-100.00, -10.0%)" in line
    assert "a.json (baseline)" in text
    assert "p99_e2el_ms" not in text  # no value anywhere: not a headline row


@pytest.mark.parametrize(
    "gate,code",
    [
        ("p99_ttft_ms>+10%", 6),  # +15 % > +10 %
        ("p99_ttft_ms>+20%", 0),
        ("p99_ttft_ms>+25", 6),  # +30 ms > +25 ms
        ("p99_ttft_ms>+50", 0),
        ("output_throughput<-5%", 6),  # -10 % < -5 %
        ("output_throughput<-15%", 0),
        ("failed>0", 6),  # the candidate's own value
        ("p99_e2el_ms>+10%", 6),  # no value on either side: no data never passes
    ],
)
def test_compare_gates_against_baseline(tmp_path, capsys, gate, code):
    a = write(tmp_path, "a.json", result())
    b = write(tmp_path, "b.json", result(p99_ttft_ms=230.0, output_throughput=900.0, failed=2))
    assert main(["bench", "compare", "--baseline", a, b, "--fail-if", gate, "--json"]) == code
    doc = json.loads(capsys.readouterr().out)
    assert doc["baseline"] == a and len(doc["gates"]) == 1
    assert doc["gates"][0]["failed"] is (code == 6)


def test_compare_gate_message_and_unknown_key(tmp_path, capsys):
    a = write(tmp_path, "a.json", result())
    b = write(tmp_path, "b.json", result(p99_ttft_ms=230.0))
    assert main(["bench", "compare", a, b, "--fail-if", "p99_ttft_ms>+10%"]) == 6
    assert "p99_ttft_ms change +15%" in capsys.readouterr().err
    assert main(["bench", "compare", a, b, "--fail-if", "p99_tft_ms>+10%"]) == 2
    assert "did you mean p99_ttft_ms" in capsys.readouterr().err


def test_compare_matches_sweep_points_by_value(tmp_path):
    def sweep(*ttfts):
        pts = [result(max_concurrency=c, p99_ttft_ms=t) for c, t in zip((1, 4), ttfts, strict=True)]
        return {"sweep": {"parameter": "concurrency", "values": [1, 4]}, "points": pts}

    a = cmp.load(write(tmp_path, "a.json", sweep(100.0, 200.0)))
    b = cmp.load(write(tmp_path, "b.json", sweep(100.0, 300.0)))
    sections = cmp.table([a, b])
    assert [s["label"] for s in sections] == ["concurrency=1", "concurrency=4"]
    gate = cmp.parse_compare_gate("p99_ttft_ms>+10%", ["p99_ttft_ms"])
    checks = cmp.evaluate([gate], [a, b])
    assert [(c["point"], c["failed"]) for c in checks] == [
        ("concurrency=1", False),
        ("concurrency=4", True),
    ]


def test_compare_needs_two_results_and_real_files(tmp_path, capsys):
    a = write(tmp_path, "a.json", result())
    assert main(["bench", "compare", a]) == 2
    junk = write(tmp_path, "junk.json", {"hello": 1})
    assert main(["bench", "compare", a, junk]) == 2
    assert "not a bench result" in capsys.readouterr().err
    with pytest.raises(UsageError):
        cmp.parse_compare_gate("p99_ttft_ms>lots", ["p99_ttft_ms"])


def test_compare_of_saved_runs_end_to_end(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        assert bench(url, "-n", "4", "--save-result", str(a)) == 0
    with standin("--ttft-ms", "400", "--itl-ms", "1") as (url, _):
        assert bench(url, "-n", "4", "--save-result", str(b)) == 0
    capsys.readouterr()
    code = main(["bench", "compare", str(a), str(b), "--fail-if", "median_ttft_ms>+100%"])
    assert code == 6
    assert "median_ttft_ms change +" in capsys.readouterr().err


# -- plot -------------------------------------------------------------------------------------


def test_plot_file_for_a_sweep(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        assert bench(url, "-n", "4", "--concurrency", "1,2", "--plot", str(png)) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plot_without_matplotlib_is_one_line_before_the_run(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a)
    )
    assert bench("http://127.0.0.1:9/v1", "--plot", "x.png") == 2  # before any connection
    err = capsys.readouterr().err
    assert "needs matplotlib" in err and "llmdeploy-cli[plot]" in err and "Traceback" not in err


# -- embeddings -------------------------------------------------------------------------------


def test_embeddings_batch_against_standin(capsys):
    with embed_standin("--latency-ms", "2") as (url, _):
        code = bench(url, "--task", "embedding", "--batch-size", "4", "-n", "6", "-c", "2",
                     "--input-len", "5", "--json")  # fmt: skip
        log = httpx.get(url.removesuffix("/v1") + "/requests", timeout=5).json()["requests"]
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["endpoint_type"] == "openai-embeddings"
    assert doc["completed"] == 6 and doc["failed"] == 0
    assert doc["total_input_tokens"] == 6 * 4 * 5  # usage.prompt_tokens: 5 words per input
    emb = doc["llmctl"]["embedding"]
    assert emb == {
        "total_inputs": 24,
        "input_throughput": pytest.approx(4 * doc["request_throughput"]),
        "batch_size": 4,
    }
    assert doc["total_token_throughput"] == pytest.approx(120 / doc["duration"])
    assert doc["median_e2el_ms"] >= 2.0 and "mean_ttft_ms" not in doc
    assert [r["inputs"] for r in log] == [1] + [4] * 6  # the check request, then the run


def test_embeddings_profile_and_failures(write_profile, capsys):
    with embed_standin("--fail-every", "3") as (url, _):
        port = url.split(":")[2].split("/")[0]
        profile = write_profile(
            f"""
            name: emb
            backend: vllm
            model:
              source: ./no-such-dir
              task: embedding
            server:
              port: {port}
            """
        )
        code = main(["bench", str(profile), "--model", "embed-standin", "-n", "8", "-c", "1",
                     "--input-len", "3"])  # fmt: skip
    assert code == 7  # it ran, and requests failed
    text = capsys.readouterr().out
    assert "Embeddings Benchmark Result" in text and "Input throughput (inputs/s)" in text
    assert "http_500 x" in text


def test_batch_size_is_for_embeddings_only(capsys):
    assert bench("http://127.0.0.1:9/v1", "--batch-size", "4") == 2
    assert "--task embedding" in capsys.readouterr().err


# -- workers ----------------------------------------------------------------------------------


def test_split_cap():
    assert split_cap(10, 4) == [3, 3, 2, 2]
    assert split_cap(None, 2) == [None, None]
    assert sum(split_cap(7, 3)) == 7


def test_workers_merge_every_request_once():
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        wl = random_workload(12, 4, 3)
        cfg = BenchConfig(url, "standin", wl, request_rate=60.0, burstiness=math.inf,
                          num_prompts=12, workers=2)  # fmt: skip
        run = run_bench(cfg)
        stamps = httpx.get(url.removesuffix("/v1") + "/stamps", timeout=10).json()
    r = run.result
    assert [rec.index for rec in run.records] == list(range(12))
    assert r["completed"] == 12 and r["failed"] == 0 and r["total_output_tokens"] == 36
    assert r["llmctl"]["config"]["workers"] == 2
    ids = {rec.request_id for rec in run.records}
    assert len(ids) == 12 and ids <= set(stamps)  # each request reached the server once
    # one schedule: request i was due at t0 + i/60 whichever worker sent it
    dues = [rec.due for rec in run.records]
    gaps = [b - a for a, b in zip(dues, dues[1:], strict=False)]
    assert all(g == pytest.approx(1 / 60, abs=1e-6) for g in gaps)
    assert any("2 worker processes" in n for n in r["llmctl"]["notes"])


def test_workers_split_a_concurrency_cap():
    with standin("--ttft-ms", "20", "--itl-ms", "1") as (url, _):
        wl = random_workload(8, 4, 2)
        run = run_bench(BenchConfig(url, "standin", wl, concurrency=3, num_prompts=9, workers=2))
    assert run.result["completed"] == 9
    assert run.result["max_concurrent_requests"] <= 3


# -- send lag ---------------------------------------------------------------------------------


def test_send_lag_runs_to_the_first_write():
    from llmdeploy_cli.bench.metrics import RequestRecord

    r = RequestRecord(0, due=1.0, slot=1.0, sent=1.001)
    assert r.send_lag == pytest.approx(0.001)
    r.written = 1.004  # httpx began writing 3 ms after the client started the request
    assert r.send_lag == pytest.approx(0.004)


def test_written_is_stamped_between_start_and_answer():
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        run = run_bench(
            BenchConfig(url, "standin", random_workload(3, 4, 2), concurrency=1, num_prompts=3)
        )
    for rec in run.records:
        assert rec.sent <= rec.written <= rec.first_chunk


def test_bench_run_gated_against_a_baseline(tmp_path, capsys):
    base = tmp_path / "base.json"
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        assert bench(url, "-n", "4", "--save-result", str(base)) == 0
    with standin("--ttft-ms", "400", "--itl-ms", "1") as (url, _):
        capsys.readouterr()
        code = bench(url, "-n", "4", "--baseline", str(base), "--json",
                     "--fail-if", "median_ttft_ms>+100%", "--fail-if", "failed>0")  # fmt: skip
    assert code == 6
    doc = json.loads(capsys.readouterr().out)
    pct, failed = doc["llmctl"]["gates"]
    assert pct["failed"] is True and pct["mode"] == "pct" and pct["value"] > 100
    assert failed["failed"] is False and failed["value"] == 0


# -- the library calls behind `llmctl bench` ------------------------------------------------


def test_run_sweep_as_a_library_call():
    """bench/sweep.py without the CLI: a concurrency sweep, gated per point, as data."""
    from llmdeploy_cli.bench import sweep
    from llmdeploy_cli.bench.gate import parse_gates
    from llmdeploy_cli.bench.metrics import result_keys

    labels = []

    class Progress:
        label = ""

        def __call__(self, ev):
            labels.append(self.label)

    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        target = sweep.resolve_target(None, url)
        assert (target.base_url, target.task, target.model) == (url.rstrip("/"), "chat", None)
        workload, tok = sweep.build_workload(None, None, 3, None, math.inf, 2, 4, 4, 0.0, 0)
        cfg = BenchConfig(
            base_url=target.base_url, model=None, workload=workload, num_prompts=3,
            concurrency=1, tokenizer=tok,
        )  # fmt: skip
        gates = parse_gates(["completed<3"], result_keys())
        result = sweep.run_sweep(cfg, [1, 2], [], Progress(), gates=gates)
    assert result.sweep == "concurrency" and len(result.runs) == 2
    assert result.doc["sweep"] == {"parameter": "concurrency", "values": [1, 2]}
    assert {"concurrency=1", "concurrency=2"} <= set(labels)
    assert [c["failed"] for c in result.all_checks] == [False, False]
    end = sweep.outcome(result)
    assert (end.code, end.kind, end.completed, end.failed) == (0, "ok", 6, 0)
    # The same runs against a gate that fails: exit 6, the failing checks as data.
    result.checks = [[dict(c, failed=True) for c in cs] for cs in result.checks]
    end = sweep.outcome(result)
    assert (end.code, end.kind, len(end.failed_checks)) == (6, "gates_failed", 2)


def test_sweep_points_refuses_two_lists():
    from llmdeploy_cli.bench import sweep

    with pytest.raises(UsageError, match="one setting at a time"):
        sweep.sweep_points(None, [1, 2], [1.0, 2.0])
