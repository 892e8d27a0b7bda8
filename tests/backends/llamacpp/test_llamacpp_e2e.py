"""llama.cpp end to end through the real `llmctl` CLI: the tiny GGUF served in-process by
the xllamacpp wheel (llama.cpp's own C++ server), serve -> ready -> smoke -> bench -> stop,
with an API key, and nothing left running afterwards."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e import doc_of, processes_with, run, wait_gone
from tests.fakes import free_port, llamacpp_profile

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None,
        reason="the xllamacpp wheel is not installed (pip install xllamacpp)",
    ),
]

KEY = "sk-e2e-llamacpp-5555aaaa"


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["LLMCTL_STATE_DIR"] = str(tmp_path / "state")
    e["E2E_LLAMA_KEY"] = KEY
    e.pop("LLMCTL_DEBUG", None)
    return e


def profile(tmp_path, gguf: Path, name: str, port: int | str = "auto") -> Path:
    server = f"port: {port}\napi_key_env: E2E_LLAMA_KEY"
    return llamacpp_profile(
        tmp_path, name, gguf, served_name="tiny", server=server, smoke_max_tokens=8
    )


def _start_runner(gguf: Path, port: int, *extra: str, **popen_kw) -> subprocess.Popen:
    """backends/llamacpp_runner.py on `gguf` (CPU, one thread, no web UI) in this Python."""
    runner = Path(__file__).resolve().parents[3] / "backends" / "llamacpp_runner.py"
    args = ["--model", str(gguf), *extra, "--port", str(port), "--n-gpu-layers", "0"]
    return subprocess.Popen(
        [sys.executable, str(runner), *args, "--threads", "1", "--no-webui"],
        stdout=subprocess.DEVNULL,
        **popen_kw,
    )


def _healthy_within(base: str, seconds: float) -> bool:
    """Whether `base`/health answers 200 within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


def test_serve_ready_smoke_bench_stop(tmp_path, env, tiny_gguf, tiny_model):
    # a fixed port, so `llmctl bench PROFILE` finds the server from the profile alone
    p = profile(tmp_path, tiny_gguf, "lcpp-e2e", port=free_port())
    r = run("serve", p, "--detach", "--json", env=env, timeout=120)
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        doc = doc_of(r)
        base = doc["base_url"]
        assert doc["model"] == "tiny" and doc["smoke"]["ok"] is True
        # every rung ran: port, health (503 -> 200), model listed as "tiny", a completion
        assert {"port", "health", "model", "completion"} <= set(doc["readiness"]["timings_s"])

        root = base.removesuffix("/v1")
        assert httpx.get(root + "/health", timeout=5).status_code == 200  # no key needed
        assert httpx.get(base + "/models", timeout=5).status_code == 401  # the key is on
        auth = {"Authorization": f"Bearer {KEY}"}
        ids = [m["id"] for m in httpx.get(base + "/models", headers=auth, timeout=5).json()["data"]]
        assert ids == ["tiny"]

        st = doc_of(run("status", "lcpp-e2e", "--json", env=env))["runs"][0]
        assert st["state"] == "running" and st["phase"] == "ready"
        engine = st["engine_pid"]
        import psutil

        cmdline = psutil.Process(engine).cmdline()
        assert "llamacpp_runner.py" in " ".join(cmdline)
        assert KEY not in " ".join(cmdline)  # the key travels as LLAMA_API_KEY
        assert KEY not in Path(st["log"]).read_text()

        s = run("smoke", p, "--json", env=env)
        assert s.returncode == 0, s.stderr + s.stdout
        smoke = doc_of(s)["smoke"]
        assert smoke["ok"] and smoke["model"] == "tiny"
        assert {c["name"] for c in smoke["checks"] if c["status"] == "pass"} >= {
            "chat: usage",
            "stream: order",
            # llama.cpp serves the legacy route: the smoke calls it by default
            "completions: answer",
            "completions: usage",
        }

        b = run(
            "bench",
            p,  # the profile: endpoint, model and key come from it
            "--tokenizer",
            tiny_model,
            "--num-prompts",
            8,
            "--input-len",
            16,
            "--output-len",
            8,
            "-c",
            2,
            "--json",
            env=env,
            timeout=180,
        )
        assert b.returncode == 0, b.stderr + b.stdout
        result = doc_of(b)
        assert result["completed"] == 8 and result["failed"] == 0, result.get("llmctl")
        assert result["total_output_tokens"] > 0 and result["mean_ttft_ms"] > 0
    finally:
        stop = run("stop", "lcpp-e2e", "--json", env=env)
    assert stop.returncode == 0, stop.stderr
    assert doc_of(stop)["stopped"][0]["stopped"] is True
    assert wait_gone(str(tiny_gguf)) == [], "a llama.cpp process outlived llmctl stop"


def test_a_truncated_gguf_is_refused_before_spawning(tmp_path, env):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    r = run("serve", profile(tmp_path, bad, "lcpp-broken"), "--json", env=env)
    assert r.returncode == 3, r.stdout + r.stderr  # preflight
    assert "GGUF" in doc_of(r)["error"]["message"]
    assert processes_with(str(bad)) == []


def test_a_gguf_llama_cpp_cannot_load_fails_fast_with_its_error(tmp_path, env):
    gguf = pytest.importorskip("gguf")
    bad = tmp_path / "unloadable.gguf"
    w = gguf.GGUFWriter(str(bad), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("no-such-pre-tokenizer")
    w.add_token_list(["a", "b"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    t0 = time.monotonic()
    r = run("serve", profile(tmp_path, bad, "lcpp-unloadable"), "--json", env=env)
    assert time.monotonic() - t0 < 60
    assert r.returncode == 1, r.stdout + r.stderr
    err = doc_of(r)["error"]
    assert "exited" in err["message"], err
    assert wait_gone(str(bad)) == []


def test_runner_stops_cleanly_on_sigterm(tiny_gguf):
    """The runner takes SIGTERM back from the C++ server and exits 0, promptly."""
    import signal

    port = free_port()
    proc = _start_runner(tiny_gguf, port, "--alias", "tiny", stderr=subprocess.PIPE, text=True)
    try:
        if not _healthy_within(f"http://127.0.0.1:{port}", 30):
            pytest.fail("the runner never answered /health 200")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err[-2000:]
        assert time.monotonic() - t0 < 10
        assert "signal 15, stopping" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_gguf_matches_the_hf_model(tiny_gguf, tiny_model):
    """The hand-written GGUF is the same model: llama.cpp tokenizes like the HF tokenizer
    and ranks the next token like transformers (q/k permutation, norms, tied output)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    port = free_port()
    proc = _start_runner(tiny_gguf, port, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _healthy_within(base, 30)
        tok = transformers.AutoTokenizer.from_pretrained(tiny_model)
        text = 'Hello! How can I help you today? JSON looks like {"ok": true}.'
        want = tok(text, add_special_tokens=False)["input_ids"]
        got = httpx.post(base + "/tokenize", json={"content": text}, timeout=10).json()["tokens"]
        assert got == want

        model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        prompt = "The quick brown fox"
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logprobs = model(ids).logits[0, -1].log_softmax(-1)
        top = torch.topk(logprobs, 5)
        r = httpx.post(
            base + "/completion",
            json={"prompt": prompt, "n_predict": 1, "temperature": 0, "n_probs": 5},
            timeout=30,
        ).json()
        ranked = r["completion_probabilities"][0]["top_logprobs"]
        assert [p["id"] for p in ranked] == top.indices.tolist()
        for p, lp in zip(ranked, top.values.tolist(), strict=True):
            assert abs(p["logprob"] - lp) < 1e-3
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_embedding_task_serves_vectors(tmp_path, env, tiny_gguf):
    """model.task: embedding renders --embedding: readiness and smoke use /v1/embeddings."""
    p = tmp_path / "emb.yml"
    p.write_text(
        textwrap.dedent(
            f"""\
            name: lcpp-emb
            backend: llamacpp
            model:
              source: {tiny_gguf}
              served_name: tiny-emb
              task: embedding
            server:
              port: auto
            resources:
              device: cpu
            options:
              runtime: xllamacpp
              threads: 1
              pooling: mean
            smoke:
              expect:
                embedding_dim: 64
            """
        )
    )
    r = run("serve", p, "--detach", "--json", env=env)
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        checks = {c["name"]: c["status"] for c in doc_of(r)["smoke"]["checks"]}
        assert checks["embedding: vector"] == checks["expect: embedding_dim"] == "pass"
    finally:
        assert run("stop", "lcpp-emb", "--json", env=env).returncode == 0
    assert wait_gone(str(tiny_gguf)) == []
