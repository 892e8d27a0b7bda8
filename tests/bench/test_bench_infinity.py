"""End to end: `llmctl bench PROFILE` against a real Infinity server (all-MiniLM-L6-v2, CPU).

Uses the Infinity environment and model fixtures of tests/backends/infinity (cached after
the first run); skips with their reason where they cannot be made.
"""

from __future__ import annotations

import json
import os
import textwrap
from functools import partial

import pytest

from tests import e2e
from tests.backends.infinity.conftest import infinity_env, minilm_dir  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

run = partial(e2e.run, timeout=300)


def test_bench_infinity_embeddings(tmp_path, infinity_env, minilm_dir):  # noqa: F811
    env = {**os.environ, **infinity_env.environ, "LLMCTL_STATE_DIR": str(tmp_path / "state")}
    env.pop("LLMCTL_DEBUG", None)
    profile = tmp_path / "inf.yml"
    profile.write_text(
        textwrap.dedent(
            f"""\
            name: inf-bench
            backend: infinity
            model:
              source: {minilm_dir}
              served_name: minilm-bench
              task: embedding
            server:
              port: auto
            resources:
              device: cpu
            runtime:
              venv: {infinity_env.venv}
            offline: true
            options:
              engine: torch
              model_warmup: false
            """
        )
    )
    r = run("serve", profile, "--detach", "--json", env=env)
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        base = json.loads(r.stdout)["base_url"]
        out = tmp_path / "emb.json"
        b = run("bench", "--url", base, "--task", "embedding", "--model", "minilm-bench",
                "-n", "12", "--batch-size", "4", "--input-len", "16",
                "--concurrency", "1,2", "--save-result", out, env=env)  # fmt: skip
        assert b.returncode == 0, b.stderr + b.stdout
        assert "Sweep over concurrency (embeddings)" in b.stdout
    finally:
        stop = run("stop", "inf-bench", "--json", env=env)
    assert stop.returncode == 0, stop.stderr
    doc = json.loads(out.read_text())
    for p in doc["points"]:
        assert p["endpoint_type"] == "openai-embeddings"
        assert p["completed"] == 12 and p["failed"] == 0
        emb = p["llmctl"]["embedding"]
        assert emb["total_inputs"] == 48 and emb["batch_size"] == 4
        assert emb["input_throughput"] == pytest.approx(4 * p["request_throughput"])
        # Infinity counts the tokens of every input in usage.prompt_tokens
        assert p["llmctl"]["prompt_token_source"] == {"usage": 12}
        assert p["total_input_tokens"] >= 48 * 8
        assert p["median_e2el_ms"] > 0
