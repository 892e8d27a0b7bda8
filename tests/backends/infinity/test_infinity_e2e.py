"""Infinity end to end on CPU through the real `llmctl` CLI: all-MiniLM-L6-v2 served from
Infinity's own environment, serve -> ready -> smoke (a 384-float vector) -> stop, offline,
with an API key, and nothing left running afterwards."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.e2e import doc_of, run, wait_gone

pytestmark = pytest.mark.slow

KEY = "sk-e2e-infinity-7777bbbb"


def test_serve_ready_smoke_384_stop(tmp_path, infinity_env, minilm_dir):
    env = dict(os.environ)
    env.update(infinity_env.environ)
    env["LLMCTL_STATE_DIR"] = str(tmp_path / "state")
    env["E2E_INFINITY_KEY"] = KEY
    env.pop("LLMCTL_DEBUG", None)
    served = "minilm-e2e"
    p = tmp_path / "infinity.yml"
    p.write_text(
        textwrap.dedent(
            f"""\
            name: inf-e2e
            backend: infinity
            model:
              source: {minilm_dir}
              served_name: {served}
              task: embedding
            server:
              port: auto
              api_key_env: E2E_INFINITY_KEY
            resources:
              device: cpu
            runtime:
              venv: {infinity_env.venv}
            offline: true
            options:
              engine: torch
              model_warmup: false
            smoke:
              prompt: llmctl serves embeddings too.
              expect:
                embedding_dim: 384
            """
        )
    )
    r = run("serve", p, "--detach", "--json", env=env, timeout=300)
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        doc = doc_of(r)
        base = doc["base_url"]
        assert doc["model"] == served
        smoke = doc["smoke"]
        assert smoke["ok"] and smoke["task"] == "embedding"
        # readiness ended with one real /v1/embeddings request
        assert "completion" in doc["readiness"]["timings_s"]

        root = base.removesuffix("/v1")
        assert httpx.get(root + "/health", timeout=5).status_code == 200  # no key needed
        assert httpx.get(base + "/models", timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        ids = [m["id"] for m in httpx.get(base + "/models", headers=auth, timeout=5).json()["data"]]
        assert ids == [served]

        s = run("smoke", p, "--json", env=env)
        assert s.returncode == 0, s.stderr + s.stdout
        checks = {c["name"]: c for c in doc_of(s)["smoke"]["checks"]}
        assert checks["expect: embedding_dim"]["status"] == "pass"
        assert checks["embedding: vector"]["detail"].startswith("384")

        st = doc_of(run("status", "inf-e2e", "--json", env=env))["runs"][0]
        import psutil

        cmdline = " ".join(psutil.Process(st["engine_pid"]).cmdline())
        assert "--url-prefix /v1" in cmdline and KEY not in cmdline
        assert KEY not in Path(st["log"]).read_text()
    finally:
        stop = run("stop", "inf-e2e", "--json", env=env)
    assert stop.returncode == 0, stop.stderr
    assert doc_of(stop)["stopped"][0]["stopped"] is True
    assert wait_gone(str(minilm_dir)) == [], "an Infinity process outlived llmctl stop"
