"""The bench against the timed stand-in server: accuracy and every bad-server case."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from llmdeploy_cli.bench.metrics import percentile
from llmdeploy_cli.bench.runner import BenchConfig, run_bench
from llmdeploy_cli.bench.workload import random_workload
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.netutil import free_port
from tests.conftest import ROOT
from tests.standins.timed_server import standin


def bench(url, *args):
    return main(["bench", "--url", url, "--input-len", "8", "--output-len", "6", *args])


def test_measured_ttft_and_itl_match_server_stamps():
    """Client times vs the server's own write stamps (one monotonic clock on Linux)."""
    with standin("--ttft-ms", "40", "--itl-ms", "8") as (url, _):
        wl = random_workload(16, 8, 8, seed=1)
        run = run_bench(BenchConfig(url, "standin", wl, concurrency=4, num_prompts=16))
        stamps = httpx.get(url.removesuffix("/v1") + "/stamps", timeout=10).json()
    assert run.result["completed"] == 16
    ttft_err, itl_err = [], []
    for r in run.records:
        s = stamps[r.request_id]
        assert len(s["chunks"]) == len(r.content_times) == 8
        # causality: nothing is received before the server wrote it
        assert all(c >= w for c, w in zip(r.content_times, s["chunks"], strict=True))
        assert r.first_chunk >= s["role"] and r.first_chunk < r.first_content
        assert r.ttft >= 0.040  # the server waited 40 ms after receiving it
        ttft_err.append(r.first_content - s["chunks"][0])
        gaps = [b - a for a, b in zip(s["chunks"], s["chunks"][1:], strict=False)]
        itl_err += [c - g for c, g in zip(r.itls, gaps, strict=True)]
    # generous for a busy shared 2-core machine; benchmarks/bench_accuracy.py measures
    # the real figures (well under 2 ms at the median)
    assert percentile(ttft_err, 50) < 0.010
    assert percentile([abs(e) for e in itl_err], 50) < 0.005
    assert run.result["median_itl_ms"] == pytest.approx(8.0, abs=4.0)
    assert run.result["median_tpot_ms"] == pytest.approx(8.0, abs=4.0)
    x = run.result["llmctl"]
    # vLLM would stamp TTFT at the role-only chunk: that time is kept separately
    assert x["first_chunk"]["median_first_chunk_ms"] < run.result["median_ttft_ms"] - 30
    assert x["token_source"] == {"usage": 16}
    assert x["send_lag"]["max_send_lag_ms"] is not None


def test_open_loop_rate_is_kept():
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        wl = random_workload(20, 4, 2)
        run = run_bench(BenchConfig(url, "standin", wl, request_rate=40.0, num_prompts=20))
    sends = sorted(r.sent for r in run.records)
    span = sends[-1] - sends[0]
    assert span == pytest.approx(19 / 40.0, abs=0.08)  # normalized absolute schedule
    assert run.result["request_rate"] == 40.0 and run.result["completed"] == 20


def test_cli_summary_json_and_saved_result(tmp_path, capsys):
    out = tmp_path / "r.json"
    with standin("--ttft-ms", "10", "--itl-ms", "2") as (url, _):
        code = bench(url, "-n", "6", "-c", "2", "--json", "--save-result", str(out),
                     "--goodput", "ttft:5000", "--warmup", "2")  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1
    assert doc["completed"] == 6 and doc["failed"] == 0
    assert doc["request_goodput"] == pytest.approx(doc["request_throughput"])
    assert doc["total_output_tokens"] == 36  # ignore_eos + min_tokens forced 6 each
    saved = json.loads(out.read_text())
    assert saved["mean_ttft_ms"] == doc["mean_ttft_ms"] and "llmctl" in saved


def test_fail_if_exits_6(capsys):
    with standin("--ttft-ms", "30", "--itl-ms", "1") as (url, _):
        code = bench(url, "-n", "3", "--fail-if", "p99_ttft_ms>1", "--fail-if", "failed>0")
    assert code == 6
    err = capsys.readouterr().err
    assert "p99_ttft_ms>1" in err and "failed>0" not in err


def test_unknown_gate_key_is_a_usage_error_before_the_run(capsys):
    assert bench("http://127.0.0.1:9/v1", "--fail-if", "p99_ttft>5") == 2
    assert "p99_ttft_ms" in capsys.readouterr().err


def test_unreachable_url_exits_5_in_one_line(capsys):
    code = bench(f"http://127.0.0.1:{free_port()}/v1", "--model", "m", "-n", "2")
    assert code == 5
    err = capsys.readouterr().err
    assert "cannot reach" in err and "Traceback" not in err


def test_a_connect_timeout_is_not_called_a_refusal():
    """The check request's own failure class words the error (openai_http's one line)."""
    from llmdeploy_cli.bench.config import BenchConfig
    from llmdeploy_cli.bench.loop import BenchLoop
    from llmdeploy_cli.bench.metrics import RequestRecord
    from llmdeploy_cli.bench.workload import random_workload

    loop = BenchLoop(BenchConfig("http://10.0.0.1:8000/v1", "m", random_workload(1, 8, 2)), None)
    rec = RequestRecord(-1)
    rec.error_class, rec.error = "connect_timeout", "connect timed out"
    e = loop._unreachable(rec)
    assert "cannot reach http://10.0.0.1:8000/v1: connect timed out" in str(e)
    assert "refused" not in str(e)
    assert "connection refused" in str(loop._unreachable())


def test_wrong_model_says_which_models_exist(capsys):
    with standin() as (url, _):
        code = bench(url, "--model", "llama-7b", "-n", "2")
    assert code == 2
    err = capsys.readouterr().err
    assert "llama-7b" in err and "standin" in err


def test_http_500s_are_counted_by_class(capsys):
    """It ran and some requests failed: exit 7 (not 0, not a crash's 1), the failures by
    class in the result and said on stderr when the first one happened."""
    with standin("--ttft-ms", "5", "--itl-ms", "1", "--fail-every", "3") as (url, _):
        code = bench(url, "-n", "9", "-c", "3", "--json")
    assert code == 7
    cap = capsys.readouterr()
    assert "a request failed (http_500): injected failure" in cap.err
    doc = json.loads(cap.out)
    assert doc["failed"] == 3 and doc["completed"] == 6
    assert doc["llmctl"]["failures"] == {"http_500": 3}
    assert "injected failure" in doc["llmctl"]["failure_examples"]["http_500"]


def test_every_request_failing_exits_7(capsys):
    """It ran and every request failed: 7 ("ran, N failed"), not 1 (could not run)."""
    with standin("--fail-every", "1") as (url, _):
        assert bench(url, "-n", "3") == 7
    assert "every request failed: http_500 x3" in capsys.readouterr().err


def test_some_requests_failing_exit_7_unless_a_failed_gate_decides(capsys):
    with standin("--ttft-ms", "2", "--itl-ms", "1", "--fail-every", "4") as (url, _):
        assert bench(url, "-n", "8", "-c", "2") == 7
        err = capsys.readouterr().err
        assert "2 of 8 requests failed: http_500 x2" in err and "failed>N" in err
        assert bench(url, "-n", "8", "-c", "2", "--fail-if", "failed>3") == 0
        assert bench(url, "-n", "8", "-c", "2", "--fail-if", "failed>1") == 6


def test_server_refusing_vllm_extensions_runs_unforced(capsys):
    with standin("--strict", "--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        code = bench(url, "-n", "2", "--json")
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["completed"] == 2 and doc["llmctl"]["forced_output_len"] is False
    assert any("ignore_eos" in n for n in doc["llmctl"]["notes"])


def test_a_refused_first_request_stops_at_once_with_the_servers_words(capsys):
    """A prompt over the model's context: stop after the check request, say why."""
    with standin("--max-context", "64", "--ttft-ms", "1", "--itl-ms", "1") as (url, _):
        code = main(["bench", "--url", url, "--input-len", "128", "--output-len", "8", "-n", "50"])
        stamps = httpx.get(url.removesuffix("/v1") + "/stamps", timeout=10).json()
    err = capsys.readouterr().err
    assert code == 1
    assert "refused the first request (HTTP 400)" in err
    assert "maximum context length is 64 tokens" in err
    assert "min_tokens" not in err.split("hint")[0]  # the server's reason, not a field
    # nothing of the 50 was sent (the two sizing probes, 16 and 64 words, came first)
    assert sorted(k.rsplit("-", 1)[1] for k in stamps) == ["0"]
    assert all(k.startswith("llmctl-size-") for k in stamps)


def test_prompts_over_the_context_the_server_lists_are_refused_before_sending(capsys):
    args = ("--max-context", "64", "--list-context", "--ttft-ms", "1", "--itl-ms", "1")
    with standin(*args) as (url, _):
        code = main(["bench", "--url", url, "--input-len", "128", "--output-len", "8", "-n", "5"])
        err = capsys.readouterr().err
        assert code == 2 and "a context of 64 tokens" in err and "--input-len" in err
        ok = main(["bench", "--url", url, "--input-len", "16", "--output-len", "8", "-n", "3"])
    assert ok == 0


def test_server_killed_mid_run_writes_partial_result(tmp_path, capsys):
    out = tmp_path / "partial.json"
    # the two sizing probes and the check come first: request 8 is the 5th measured one
    with standin("--ttft-ms", "5", "--itl-ms", "5", "--die-after", "8") as (url, proc):
        code = bench(url, "-n", "40", "-c", "2", "--output-len", "10",
                     "--save-result", str(out))  # fmt: skip
        assert proc.wait(timeout=10) == 3
    assert code == 5
    err = capsys.readouterr().err
    assert "lost the server" in err and str(out) in err
    doc = json.loads(out.read_text())
    assert doc["llmctl"]["server_lost"] is True
    assert 3 <= doc["completed"] <= 5  # request 6 (the check was 1) died mid-stream
    assert doc["failed"] >= 3
    assert set(doc["llmctl"]["failures"]) <= {"disconnected", "connect"}
    assert doc["llmctl"]["not_sent"] > 0


def measured_requests(url: str) -> int:
    """Requests of the measured run (not the check or the sizing probes) the stand-in has
    received so far."""
    stamps = httpx.get(url.removesuffix("/v1") + "/stamps", timeout=5).json()
    return sum(k.startswith("llmctl-") and "check" not in k and "-size-" not in k for k in stamps)


def test_ctrl_c_writes_what_was_measured(tmp_path):
    out = tmp_path / "int.json"
    with standin("--ttft-ms", "20", "--itl-ms", "20") as (url, _):
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmdeploy_cli", "bench", "--url", url, "-n", "200",
             "-c", "2", "--output-len", "5", "--input-len", "4", "--save-result", str(out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            # interrupt once the run is under way (a busy machine can take seconds to start)
            while measured_requests(url) < 4 and time.monotonic() < deadline - 10:
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    doc = json.loads(out.read_text())
    assert doc["llmctl"]["interrupted"] is True
    assert doc["completed"] > 0 and doc["failed"] == 0, doc["llmctl"].get("failures")
    assert "Serving Benchmark Result" in stdout


def test_profile_file_gives_url_model_and_api_key(write_profile, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_KEY", "s3cret")
    with standin("--api-key", "s3cret", "--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        port = url.split(":")[2].split("/")[0]
        profile = write_profile(
            f"""
            name: standin
            backend: vllm
            model:
              source: ./no-such-model-dir
            server:
              port: {port}
              api_key_env: BENCH_KEY
            """
        )
        code = main(["bench", str(profile), "-n", "2", "--output-len", "3", "--json"])
        assert code == 0, capsys.readouterr().err
        doc = json.loads(capsys.readouterr().out)
        assert doc["completed"] == 2 and doc["model_id"] == "standin"
        monkeypatch.setenv("BENCH_KEY", "wrong")
        assert main(["bench", str(profile), "-n", "2"]) == 1
        assert "refused the request (401)" in capsys.readouterr().err
    assert "s3cret" not in json.dumps(doc)


def test_profile_with_auto_port_uses_the_running_server(write_profile, capsys):
    from llmdeploy_cli.supervise import state

    profile = write_profile(
        """
        name: auto
        backend: vllm
        model:
          source: ./no-such-model-dir
          served_name: standin
        server:
          port: auto
        """
    )
    assert main(["bench", str(profile), "-n", "1"]) == 5  # nothing serves it
    err = capsys.readouterr().err
    assert "port: auto" in err and "--url" in err
    with standin("--ttft-ms", "1", "--itl-ms", "1") as (url, _):
        port = int(url.split(":")[2].split("/")[0])
        st = state.RunState(
            name="auto",
            backend="vllm",
            profile=str(profile),
            profile_hash=None,
            base_url=url,
            model="standin",
            port=port,
            log="/dev/null",
            phase="ready",
            managed=False,  # nothing of ours to be alive: the record alone says running
        )
        state.save(st)
        code = main(["bench", str(profile), "-n", "2", "--output-len", "3", "--json"])
        assert code == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["completed"] == 2


def test_reasoning_chunks_count_for_ttft():
    with standin("--reasoning", "3", "--ttft-ms", "15", "--itl-ms", "2") as (url, _):
        run = run_bench(
            BenchConfig(url, "standin", random_workload(2, 4, 6), concurrency=1, num_prompts=2)
        )
    assert run.result["completed"] == 2
    assert run.result["llmctl"]["seen"] == {"reasoning": 2, "content": 2}
    for r in run.records:
        assert len(r.content_times) == 6 and r.ttft >= 0.015


def test_duration_closed_loop_stops_on_time():
    with standin("--ttft-ms", "5", "--itl-ms", "1") as (url, _):
        run = run_bench(
            BenchConfig(url, "standin", random_workload(4, 4, 3), concurrency=2, duration=0.6)
        )
    assert run.result["completed"] >= 4 and run.result["failed"] == 0
    assert max(r.slot for r in run.records) - min(r.slot for r in run.records) < 0.6


def test_unquoted_goodput_pair_gets_a_hint(capsys):
    code = main(["bench", "--url", "http://127.0.0.1:9/v1", "--goodput", "ttft:5", "tpot:5"])
    assert code == 2
    assert "--goodput 'ttft:500 tpot:50'" in capsys.readouterr().err
