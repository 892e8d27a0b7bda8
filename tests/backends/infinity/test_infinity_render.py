"""The Infinity backend: profile keys to `infinity_emb v2` flags, the /v1 prefix, the traps
in Infinity's defaults (host 0.0.0.0, trust-remote-code on), the key as a variable, tasks,
readiness. No server is started here (see test_infinity_e2e.py)."""

from __future__ import annotations

import json
import textwrap

import httpx
import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.backend import Endpoint, Readiness
from llmdeploy_cli.command import Secret
from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.flagcheck import check_plan, committed_snapshot
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile

KEY = "sk-test-infinity-0123456789"
ENVIRON = {"HOME": "/home/user", "MY_KEY": KEY}


@pytest.fixture
def render(tmp_path):
    def _render(body: str, environ=None, version: str = "0.0.78"):
        p = tmp_path / "p.yml"
        p.write_text("name: e\nbackend: infinity\n" + textwrap.dedent(body).lstrip())
        env = ENVIRON if environ is None else environ
        return resolve_profile(load_profile(p, env), env, engine_version=version).plan

    return _render


def value(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_minimal_profile(render):
    plan = render("model:\n  source: /m/minilm\n")
    argv = plan.server.command.argv
    assert argv == [
        "infinity_emb",
        "v2",
        "--model-id",
        "/m/minilm",
        "--served-model-name",
        "e",
        "--url-prefix",
        "/v1",  # without it /v1/embeddings is a 404
        "--host",
        "127.0.0.1",  # Infinity's own default is 0.0.0.0
        "--port",
        "7997",
        "--no-trust-remote-code",  # Infinity's own default is to trust it
    ]
    ep = plan.endpoint
    assert ep.base_url == "http://127.0.0.1:7997/v1"
    assert ep.health_url == "http://127.0.0.1:7997/health"  # outside the prefix
    assert ep.model == "e" and ep.task == "embedding"  # unset task: embedding


def test_every_key_and_option(render):
    plan = render(
        """
        model:
          source: org/bge-small
          served_name: bge
          revision: main
          dtype: float16
          trust_remote_code: true
          task: rerank
        server:
          host: 0.0.0.0
          port: 8000
          api_key_env: MY_KEY
        resources:
          device: cuda
          max_num_seqs: 64
          visible_devices: "1"
        offline: true
        options:
          engine: optimum
          model_warmup: false
          vector_disk_cache: true
          lengths_via_tokenize: true
          compile: false
          bettertransformer: false
          embedding_dtype: int8
          pooling_method: mean
          log_level: warning
          permissive_cors: true
        """
    )
    cmd = plan.server.command
    argv = cmd.argv
    assert value(argv, "--model-id") == "org/bge-small"
    assert value(argv, "--served-model-name") == "bge"
    assert value(argv, "--revision") == "main"
    assert value(argv, "--dtype") == "float16"
    assert "--trust-remote-code" in argv and "--no-trust-remote-code" not in argv
    assert value(argv, "--device") == "cuda"
    assert value(argv, "--batch-size") == "64"
    assert value(argv, "--engine") == "optimum"
    for f in ("--no-model-warmup", "--vector-disk-cache", "--lengths-via-tokenize"):
        assert f in argv
    assert "--no-compile" in argv and "--no-bettertransformer" in argv
    assert value(argv, "--embedding-dtype") == "int8"
    assert value(argv, "--pooling-method") == "mean"
    assert value(argv, "--log-level") == "warning"
    assert "--permissive-cors" in argv
    assert KEY not in argv
    assert cmd.env["INFINITY_API_KEY"] == KEY and isinstance(cmd.env["INFINITY_API_KEY"], Secret)
    assert cmd.env["INFINITY_ANONYMOUS_USAGE_STATS"] == "0"
    assert cmd.env["HF_HUB_OFFLINE"] == "1" and cmd.env["CUDA_VISIBLE_DEVICES"] == "1"
    assert KEY not in json.dumps(plan.as_dict())
    assert plan.endpoint.task == "rerank" and plan.endpoint.base_url.endswith(":8000/v1")
    # every flag is an exact option of infinity_emb v2 0.0.78 with a value it accepts
    assert check_plan(plan, committed_snapshot("infinity", "0.0.78")) == []


def test_chat_is_refused(render):
    with pytest.raises(ProfileError, match="not chat"):
        render("model:\n  source: /m/minilm\n  task: chat\n")


@pytest.mark.parametrize(
    "body",
    [
        "resources:\n  max_model_len: 512\n",
        "resources:\n  gpu_memory_utilization: 0.5\n",
        "resources:\n  tensor_parallel: 2\n",
        "resources:\n  kv_cache_dtype: fp8\n",
    ],
)
def test_keys_infinity_cannot_honour_are_refused(render, body):
    with pytest.raises(ProfileError, match="infinity"):
        render("model:\n  source: /m/minilm\n" + body)


def test_api_key_in_extra_args_warns(render):
    plan = render("model:\n  source: /m/minilm\nextra_args: ['--api-key', 'abc']\n")
    assert any("INFINITY_API_KEY" in w for w in plan.warnings)


def test_engine_env_reference(render, monkeypatch, tmp_path):
    monkeypatch.setenv("LLMCTL_ENGINES_DIR", str(tmp_path / "engines"))
    plan = render("model:\n  source: /m/minilm\nruntime:\n  venv: engine:infinity@0.0.78:cpu\n")
    assert plan.server.command.argv[0] == str(
        tmp_path / "engines" / "infinity-0.0.78-cpu" / "bin" / "infinity_emb"
    )


def _client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_probe():
    backend = registry.get("infinity")
    ep = Endpoint("http://h:1/v1", "m", health_url="http://h:1/health", task="embedding")

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    p = backend.probe(_client(refused), ep)
    assert p.state is Readiness.DOWN
    ok = backend.probe(_client(lambda r: httpx.Response(200, json={"unix": 1.0})), ep)
    assert ok.state is Readiness.READY
    assert backend.probe(_client(lambda r: httpx.Response(500)), ep).state is Readiness.LOADING
