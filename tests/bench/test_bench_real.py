"""End to end: `llmctl bench PROFILE` against `transformers serve` of the tiny model."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from llmdeploy_cli.cli.app import main
from llmdeploy_cli.netutil import free_port

TRANSFORMERS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "transformers"


@pytest.mark.slow
def test_bench_transformers_serve_tiny_model(tiny_model, write_profile, tmp_path, capsys):
    exe = str(TRANSFORMERS) if TRANSFORMERS.exists() else shutil.which("transformers")
    if exe is None:
        pytest.skip("transformers serve is not installed")
    port = free_port()
    profile = write_profile(
        f"""
        name: tiny
        backend: transformers
        model:
          source: {tiny_model}
          dtype: float32
        server:
          port: {port}
        resources:
          device: cpu
        """
    )
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [exe, "serve", str(tiny_model), "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu", "--dtype", "float32"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        out = tmp_path / "result.json"
        code = main(["bench", str(profile), "-n", "8", "-c", "2", "--input-len", "16",
                     "--output-len", "8", "--json", "--save-result", str(out)])  # fmt: skip
        first = capsys.readouterr()
        # a model the server does not serve: said so (with what it serves) before anything
        # is measured, not "every request failed" blamed on a field (transformers serve
        # refuses ignore_eos first, then answers 400 "pinned to ...")
        wrong = main(["bench", "--url", f"http://127.0.0.1:{port}/v1", "--model", "nope",
                      "-n", "4", "--json"])  # fmt: skip
        refused = json.loads(capsys.readouterr().out)["error"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert code == 0, first.err
    assert wrong == 2, refused
    assert "'nope' is not served" in refused["message"] and str(tiny_model) in refused["message"]
    doc = json.loads(first.out)
    assert doc["completed"] == 8 and doc["failed"] == 0
    assert doc["model_id"] == str(tiny_model)
    assert doc["tokenizer_id"] == str(tiny_model)  # prompts made with the model's tokenizer
    x = doc["llmctl"]
    assert x["workload"]["source"] == "random-tokenizer"
    assert x["token_source"] == {"usage": 8}
    assert doc["total_input_tokens"] >= 8 * 16  # the server counts the chat template too
    assert 0 < doc["total_output_tokens"] <= 64
    assert doc["mean_ttft_ms"] > 0 and doc["mean_e2el_ms"] >= doc["mean_ttft_ms"]
    # transformers serve refuses vLLM's ignore_eos/min_tokens (422): said, not hidden
    assert x["forced_output_len"] is False
    assert json.loads(out.read_text())["completed"] == 8
