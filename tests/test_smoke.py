"""`llmctl smoke` and `run_smoke`, against a real `transformers serve` of the tiny model.

The stand-in (tests/standins/openai_standin.py, NOT a real engine) is used only for what
the real server cannot show: API-key checks, a role-only first chunk with a pause before
text, reasoning-only and tool-call answers, missing usage / [DONE], a broken stream order,
a 500, a server that refuses stream_options, a listing of served names, embeddings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmdeploy_cli.backend import Endpoint
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.errors import AssertionFailed, LlmctlError, UnreachableError
from llmdeploy_cli.netutil import free_port
from llmdeploy_cli.profile import SmokeSpec
from llmdeploy_cli.smoke import AuthError, SmokeFailed, run_smoke
from tests.standins.openai_standin import OpenAIStandin

ROOT = Path(__file__).resolve().parent.parent
TRANSFORMERS = ROOT / ".venv" / "bin" / "transformers"


def smoke_json(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["smoke", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


# ---------------------------------------------------------------------------------------
# a real transformers serve of the tiny model (module-scoped)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_server(tiny_model):
    if not TRANSFORMERS.exists():
        pytest.skip(f"{TRANSFORMERS} is missing (make venv installs transformers[serving])")
    import httpx

    port = free_port()
    log = open(tiny_model.parent / f"serve-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(TRANSFORMERS), "serve", str(tiny_model), "--host", "127.0.0.1"]
        + ["--port", str(port), "--device", "cpu"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    body = {
        "model": str(tiny_model),
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        "temperature": 0,
    }
    try:
        deadline = time.monotonic() + 180
        ready = False
        while time.monotonic() < deadline and not ready:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited {proc.returncode}: see {log.name}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
                    ready = r.status_code == 200
            except httpx.TransportError:
                pass
            if not ready:
                time.sleep(0.25)
        if not ready:
            pytest.fail(f"transformers serve not ready in 180 s: see {log.name}")
        yield {"base_url": f"{base}/v1", "model": str(tiny_model), "port": port}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


@pytest.fixture
def real_profile(real_server, write_profile):
    def _make(smoke_yaml: str = "  max_tokens: 8\n") -> Path:
        return write_profile(
            f"""
            name: tiny
            backend: transformers
            model:
              source: {real_server["model"]}
              dtype: float32
            server:
              port: {real_server["port"]}
            resources:
              device: cpu
            smoke:
            """
            + smoke_yaml.replace("\n", "\n            ").rstrip()
            + "\n"
        )

    return _make


# ---------------------------------------------------------------------------------------
# real server
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_profile_passes_on_real_server(real_profile, capsys):
    p = real_profile()
    capsys.readouterr()
    code = main(["smoke", str(p)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "✓ chat: answer" in out and "✓ stream: order" in out
    assert "TTFT" in out and "latency" in out
    assert out.strip().splitlines()[-1].startswith("smoke ok: ")


@pytest.mark.slow
def test_smoke_profile_json_shape(real_profile, real_server, capsys):
    code, doc = smoke_json(capsys, str(real_profile()))
    assert code == 0
    assert doc["schema_version"] == 1
    rep = doc["smoke"]
    assert rep["ok"] is True
    assert rep["model"] == real_server["model"]
    assert rep["base_url"] == real_server["base_url"]
    checks = {c["name"]: c["status"] for c in rep["checks"]}
    # the backend declares it may not list its model, but the server's answer decides:
    # transformers serve 5.x lists the local directory, so the check passes
    assert checks["model listed"] == "pass"
    assert real_server["model"] in rep["listed_models"]
    assert checks["sdk: chat"] == "pass" and checks["sdk: stream"] == "pass"
    for name in ("answer", "finish_reason", "usage"):
        assert checks[f"chat: {name}"] == "pass"
        assert checks[f"stream: {name}"] == "pass"
    assert checks["stream: order"] == "pass"
    modes = {r["mode"]: r for r in rep["requests"]}
    chat, stream = modes["chat"], modes["stream"]
    assert chat["text_field"] == "content" and chat["answer_chars"] > 0
    assert chat["finish_reason"] in ("stop", "length")
    assert 0 < rep["completion_tokens"] <= 8
    assert rep["prompt_tokens"] > 0
    assert rep["latency_ms"] > 0 and rep["ttft_ms"] > 0
    # transformers serve streams a role-only chunk first: TTFT is taken after it
    assert stream["first_chunk_ms"] <= stream["ttft_ms"] <= stream["e2e_ms"]
    assert stream["text_chunks"] >= 1 and stream["chunks"] > stream["text_chunks"]
    assert stream["usage"]["completion_tokens"] <= 8
    assert any("[DONE]" in w for w in rep["warnings"])  # transformers never sends it
    json.dumps(doc)


@pytest.mark.slow
def test_smoke_url_passes_on_real_server(real_server, capsys):
    url = real_server["base_url"].removesuffix("/v1")  # the /v1 root is added
    code, doc = smoke_json(
        capsys, "--url", url, "--model", real_server["model"], "--max-tokens", "4"
    )
    assert code == 0, doc
    assert doc["smoke"]["ok"] and doc["smoke"]["completion_tokens"] <= 4
    # /v1/models on transformers serve fails without an HF cache: a warning, not a failure
    assert doc["smoke"]["checks"][0]["status"] in ("skip", "warn", "pass")


@pytest.mark.slow
def test_smoke_regex_expectation_pass_and_fail(real_profile, capsys):
    code, doc = smoke_json(
        capsys, str(real_profile("  max_tokens: 4\n  expect:\n    regex: '[\\s\\S]'\n"))
    )
    assert code == 0, doc
    statuses = {c["name"]: c["status"] for c in doc["smoke"]["checks"]}
    assert statuses["expect: regex"] == "pass"

    p = real_profile("  max_tokens: 4\n  expect:\n    regex: '^NEVER-SAID-42$'\n")
    code, doc = smoke_json(capsys, str(p))
    assert code == 6
    assert doc["error"]["code"] == 6 and doc["error"]["kind"] == "assertion"
    assert "expect: regex" in doc["error"]["message"]
    failed = [c for c in doc["report"]["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["expect: regex"]


@pytest.mark.slow
def test_smoke_regex_failure_text_output(real_profile, capsys):
    p = real_profile("  max_tokens: 4\n  expect:\n    regex: '^NEVER-SAID-42$'\n")
    capsys.readouterr()
    code = main(["smoke", str(p)])
    out = capsys.readouterr().out
    assert code == 6
    assert "✗ expect: regex" in out and "smoke FAILED" in out


@pytest.mark.slow
def test_smoke_wrong_model_name_is_clear(real_server, capsys):
    code, doc = smoke_json(capsys, "--url", real_server["base_url"], "--model", "no-such-model")
    assert code == 6
    msg = doc["error"]["message"]
    assert "no-such-model" in msg and "not served" in msg
    assert real_server["model"] in msg  # the server's own text names the pinned model


@pytest.mark.slow
def test_run_smoke_core_on_real_server(real_server):
    ep = Endpoint(base_url=real_server["base_url"], model=real_server["model"])
    rep = run_smoke(ep, SmokeSpec(max_tokens=4), check_listed=False)
    assert rep.ok and rep.text_field == "content"
    assert rep.latency_s > 0 and rep.ttft_s > 0
    assert rep.summary().startswith("smoke ok: ")
    assert "\n" not in rep.summary()


@pytest.mark.slow
def test_smoke_port_auto_uses_run_state(real_server, write_profile, capsys):
    from llmdeploy_cli.supervise import state as st

    p = write_profile(
        f"""
        name: tiny-auto
        backend: transformers
        model:
          source: {real_server["model"]}
        server:
          port: auto
        smoke:
          max_tokens: 4
        """
    )
    code, doc = smoke_json(capsys, str(p))
    assert code == 5 and "port: auto" in doc["error"]["message"]
    assert "--url" in doc["error"]["hint"]

    st.save(
        st.RunState(
            name="tiny-auto",
            backend="transformers",
            profile=str(p),
            profile_hash=None,
            base_url=real_server["base_url"],
            model=real_server["model"],
            port=real_server["port"],
            log="/dev/null",
            phase="ready",
            managed=False,
        )
    )
    code, doc = smoke_json(capsys, str(p))
    assert code == 0, doc
    assert doc["smoke"]["base_url"] == real_server["base_url"]


# ---------------------------------------------------------------------------------------
# no server at all
# ---------------------------------------------------------------------------------------
def test_smoke_unreachable_url_exits_5(capsys):
    port = free_port()  # nothing listens there
    code, doc = smoke_json(capsys, "--url", f"http://127.0.0.1:{port}", "--model", "m")
    assert code == 5
    assert doc["error"]["kind"] == "unreachable"
    assert f"127.0.0.1:{port}" in doc["error"]["message"]
    assert "connection refused" in doc["error"]["message"]
    assert doc["error"]["hint"]


def test_smoke_unreachable_profile_exits_5(write_profile, tmp_path, capsys):
    port = free_port()
    p = write_profile(
        f"""
        name: nothing
        backend: transformers
        model:
          source: {tmp_path}
        server:
          port: {port}
        """
    )
    code, doc = smoke_json(capsys, str(p))
    assert code == 5 and str(port) in doc["error"]["message"]


def test_smoke_needs_file_or_url(capsys):
    code, doc = smoke_json(capsys)
    assert code == 2 and doc["error"]["kind"] == "usage"


def test_smoke_help_is_fast_and_lists_flags():
    proc = subprocess.run(
        [sys.executable, "-m", "llmdeploy_cli", "smoke", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0
    for flag in ("--url", "--model", "--api-key-env", "--prompt", "--max-tokens", "--timeout"):
        assert flag in proc.stdout


# ---------------------------------------------------------------------------------------
# stand-in: faults the real server cannot show
# ---------------------------------------------------------------------------------------
def test_auth_missing_or_wrong_key(monkeypatch, capsys):
    with OpenAIStandin(["m"], api_key="sekrit-123") as s:
        monkeypatch.delenv("SMOKE_TEST_KEY", raising=False)
        code, doc = smoke_json(capsys, "--url", s.base_url, "--model", "m")
        assert code == 1
        assert doc["error"]["kind"] == "auth"
        assert "API key missing or wrong" in doc["error"]["message"]

        monkeypatch.setenv("SMOKE_TEST_KEY", "wrong")
        code, doc = smoke_json(
            capsys, "--url", s.base_url, "--model", "m", "--api-key-env", "SMOKE_TEST_KEY"
        )
        assert code == 1 and "$SMOKE_TEST_KEY" in doc["error"]["hint"]

        monkeypatch.setenv("SMOKE_TEST_KEY", "sekrit-123")
        code, doc = smoke_json(
            capsys, "--url", s.base_url, "--model", "m", "--api-key-env", "SMOKE_TEST_KEY"
        )
        assert code == 0, doc
        assert "sekrit-123" not in json.dumps(doc)
        assert doc["smoke"]["checks"][0] == {
            "name": "model listed",
            "status": "pass",
            "detail": "'m' in /v1/models",
        }


def test_api_key_env_unset_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("SMOKE_TEST_UNSET", raising=False)
    code, doc = smoke_json(
        capsys, "--url", "http://127.0.0.1:9", "--model", "m", "--api-key-env", "SMOKE_TEST_UNSET"
    )
    assert code == 2 and "SMOKE_TEST_UNSET" in doc["error"]["message"]


def test_ttft_skips_role_only_first_chunk():
    with OpenAIStandin(["m"], first_text_delay=0.3) as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec(), check_listed=True)
    stream = rep.exchange("stream")
    assert stream.first_chunk_s < 0.25
    assert stream.ttft_s >= 0.3
    assert rep.ttft_s == stream.ttft_s
    assert stream.done_seen and rep.warnings == []


def test_request_parameters_only_where_they_apply():
    with OpenAIStandin(["m"]) as s:
        run_smoke(Endpoint(s.base_url, "m"), SmokeSpec(max_tokens=5, system_prompt="Be brief."))
        plain, streamed, sdk_plain, sdk_streamed = s.bodies("/v1/chat/completions")
    for body in (plain, streamed, sdk_plain, sdk_streamed):
        assert body["temperature"] == 0 and body["max_tokens"] == 5
        assert "top_p" not in body and "top_k" not in body
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "stream" not in plain and not sdk_plain.get("stream")
    assert streamed["stream"] is True and sdk_streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}
    assert sdk_streamed["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ("reasoning", "reasoning_content"),
        ("reasoning_field", "reasoning"),
        ("tool_calls", "tool_calls"),
    ],
)
def test_reasoning_and_tool_call_answers_count(fault, field):
    with OpenAIStandin(["m"], fault=fault) as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec())
    assert rep.ok
    assert rep.text_field == field
    assert rep.exchange("stream").text_field == field
    assert field in rep.summary()


def test_reasoning_answer_meets_regex():
    spec = SmokeSpec(expect={"regex": "Hello"})
    with OpenAIStandin(["m"], fault="reasoning") as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), spec)
    assert {c.name: c.status for c in rep.checks}["expect: regex"] == "pass"


def test_json_expectation():
    spec = SmokeSpec(expect={"json": True})
    with OpenAIStandin(["m"], answer='```json\n{"ok": true}\n```') as s:
        assert run_smoke(Endpoint(s.base_url, "m"), spec).ok
    with OpenAIStandin(["m"], answer="not json") as s, pytest.raises(SmokeFailed) as e:
        run_smoke(Endpoint(s.base_url, "m"), spec)
    assert e.value.code == 6 and "expect: json" in e.value.message


def test_missing_usage_is_a_warning():
    with OpenAIStandin(["m"], fault="no_usage") as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec())
    assert rep.ok
    statuses = {c.name: c.status for c in rep.checks}
    assert statuses["chat: usage"] == "warn" and statuses["stream: usage"] == "warn"
    assert any("no usage" in w for w in rep.warnings)
    assert rep.completion_tokens is None
    assert rep.as_dict()["completion_tokens"] is None


def test_missing_done_is_a_warning():
    with OpenAIStandin(["m"], fault="no_done") as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec())
    assert rep.ok and any("[DONE]" in w for w in rep.warnings)


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("empty", "chat: answer"),
        ("no_finish", "chat: finish_reason"),
        ("text_after_finish", "stream: order"),
    ],
)
def test_protocol_faults_fail_with_exit_6(fault, check, capsys):
    with OpenAIStandin(["m"], fault=fault) as s:
        code, doc = smoke_json(capsys, "--url", s.base_url, "--model", "m")
    assert code == 6, doc
    failed = [c["name"] for c in doc["report"]["checks"] if c["status"] == "fail"]
    assert check in failed


def test_raise_on_failure_false_returns_the_report():
    with OpenAIStandin(["m"], fault="empty") as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec(), raise_on_failure=False)
    assert not rep.ok and rep.summary().startswith("smoke FAILED")


def test_server_500_shows_the_servers_text(capsys):
    with OpenAIStandin(["m"], fault="error500") as s:
        code, doc = smoke_json(capsys, "--url", s.base_url, "--model", "m")
    assert code == 1
    assert "HTTP 500" in doc["error"]["message"]
    assert "CUDA error: an illegal memory access" in doc["error"]["message"]


def test_stream_error_chunk_fails():
    with OpenAIStandin(["m"], fault="stream_error") as s, pytest.raises(LlmctlError) as e:
        run_smoke(Endpoint(s.base_url, "m"), SmokeSpec())
    assert "engine died" in e.value.message and e.value.code == 1


def test_server_refusing_stream_options_is_retried_once_without():
    with OpenAIStandin(["m"], fault="reject_stream_options") as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec())
        streamed = [b for b in s.bodies("/v1/chat/completions") if b.get("stream")]
    assert rep.ok
    # ours, ours again without it, then the SDK's stream (without it from the start)
    assert len(streamed) == 3 and "stream_options" not in streamed[1]
    assert "stream_options" not in streamed[2]
    assert any("stream_options" in w for w in rep.warnings)


def test_unknown_model_names_the_served_ones(capsys):
    with OpenAIStandin(["served-a", "served-b"]) as s:
        code, doc = smoke_json(capsys, "--url", s.base_url, "--model", "wrong")
        assert code == 6
        assert "'wrong' is not served" in doc["error"]["message"]
        assert "served-a, served-b" in doc["error"]["hint"]
        # the core with check_listed=True fails before any completion
        n = len(s.requests)
        with pytest.raises(AssertionFailed) as e:
            run_smoke(Endpoint(s.base_url, "wrong"), SmokeSpec(), check_listed=True)
        assert "served-a" in e.value.hint
        assert all(p == "/v1/models" for (_m, p, _h, _b) in s.requests[n:])


def test_url_without_model_takes_the_first_listed(capsys):
    with OpenAIStandin(["first", "second"]) as s:
        code, doc = smoke_json(capsys, "--url", s.base_url)
    assert code == 0 and doc["smoke"]["model"] == "first"
    with OpenAIStandin(["x"], list_models=False) as s:
        code, doc = smoke_json(capsys, "--url", s.base_url)
    assert code == 2 and "--model" in doc["error"]["hint"]


def test_embedding_endpoint_and_dimension(capsys):
    with OpenAIStandin(["emb"], embedding_dim=16) as s:
        ep = Endpoint(s.base_url, "emb", task="embedding")
        rep = run_smoke(ep, SmokeSpec(expect={"embedding_dim": 16}))
        assert rep.ok and rep.exchange("embedding").dim == 16
        assert s.bodies("/v1/chat/completions") == []
        with pytest.raises(SmokeFailed) as e:
            run_smoke(ep, SmokeSpec(expect={"embedding_dim": 1024}))
        assert "got 16, expected 1024" in e.value.message
        code, doc = smoke_json(capsys, "--url", s.base_url, "--task", "embedding")
        assert code == 0 and doc["smoke"]["requests"][0]["dim"] == 16


def test_timeout_is_unreachable_with_a_hint():
    with OpenAIStandin(["m"], first_text_delay=2.0) as s, pytest.raises(UnreachableError) as e:
        run_smoke(Endpoint(s.base_url, "m"), SmokeSpec(), timeout=0.5)
    assert e.value.code == 5 and "--timeout" in e.value.hint


def test_auth_error_from_core_names_the_env():
    with OpenAIStandin(["m"], api_key="k") as s, pytest.raises(AuthError) as e:
        run_smoke(Endpoint(s.base_url, "m", api_key_env="MY_KEY_ENV"), SmokeSpec(), api_key="bad")
    assert "set $MY_KEY_ENV" in e.value.hint


def test_proxy_variables_apply_to_remote_urls_only():
    from llmdeploy_cli.openai_http.clients import use_proxy_env as _use_proxy_env

    assert not _use_proxy_env("http://127.0.0.1:8000/v1")
    assert not _use_proxy_env("http://localhost:8000/v1")
    assert not _use_proxy_env("http://[::1]:8000/v1")
    assert _use_proxy_env("http://gpu-box.internal:8000/v1")


def test_second_finish_in_an_empty_chunk_is_a_warning():
    """Xinference 4.x closes a stream with a second, empty finish chunk."""
    with OpenAIStandin(["m"], fault="second_empty_finish") as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec())
    assert rep.ok
    assert rep.exchange("stream").finish_reason == "stop"
    assert any("second finish_reason" in w for w in rep.warnings)


def test_text_after_finish_still_fails():
    with OpenAIStandin(["m"], fault="text_after_finish") as s, pytest.raises(SmokeFailed):
        run_smoke(Endpoint(s.base_url, "m"), SmokeSpec())


def test_sdk_pass_runs_plain_and_streamed_calls_through_the_openai_sdk():
    with OpenAIStandin(["m"], api_key="k") as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec(), api_key="k")
        sent = [h for (_m, p, h, _b) in s.requests if p == "/v1/chat/completions"]
        sdk = [{k.lower(): v for k, v in h.items()} for h in sent[2:]]
    statuses = {c.name: c.status for c in rep.checks}
    assert statuses["sdk: chat"] == "pass" and statuses["sdk: stream"] == "pass"
    assert len(sdk) == 2 and all(h["authorization"] == "Bearer k" for h in sdk)
    assert all(h.get("x-stainless-retry-count") == "0" for h in sdk)
    assert rep.ok and rep.warnings == []


def test_what_the_sdk_refuses_fails_the_smoke_with_its_own_error(capsys):
    with OpenAIStandin(["m"], fault="refuse_sdk") as s:
        code, doc = smoke_json(capsys, "--url", s.base_url, "--model", "m")
    assert code == 6, doc
    checks = {c["name"]: c for c in doc["report"]["checks"]}
    assert checks["chat: answer"]["status"] == "pass"  # our own pass was fine
    assert checks["sdk: chat"]["status"] == "fail"
    assert "BadRequestError" in checks["sdk: chat"]["detail"]
    assert "x-stainless-* headers are not allowed" in checks["sdk: chat"]["detail"]


def test_content_the_sdk_hands_over_as_a_list_fails():
    """Our parser takes a list of content parts as text; a client reading .content would
    get a list, so the SDK pass fails it."""
    with OpenAIStandin(["m"], fault="content_parts") as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec(), raise_on_failure=False)
    checks = {c.name: c for c in rep.checks}
    assert checks["chat: answer"].status == "pass"
    assert checks["sdk: chat"].status == "fail" and "not a string" in checks["sdk: chat"].detail
    assert checks["sdk: stream"].status == "pass"


def test_unlisted_model_for_a_non_listing_backend_is_decided_by_the_server():
    """check_listed=False (a backend that may not list its model) still asks the server."""
    with OpenAIStandin(["m"]) as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec(), check_listed=False)
    assert {c.name: c.status for c in rep.checks}["model listed"] == "pass"
    with OpenAIStandin(["m"], list_models=False) as s:
        rep = run_smoke(Endpoint(s.base_url, "m"), SmokeSpec(), check_listed=False)
    assert {c.name: c.status for c in rep.checks}["model listed"] == "skip"
    assert rep.ok and rep.warnings == []


def test_smoke_routes_follow_the_backend_unless_the_profile_says():
    from llmdeploy_cli.capabilities import NOT_SUPPORTED, Task
    from llmdeploy_cli.profile import SmokeSpec
    from llmdeploy_cli.smoke import smoke_routes

    both = frozenset({Task.CHAT, Task.COMPLETIONS})
    assert smoke_routes(SmokeSpec(), both) == ("chat", "completions")
    assert smoke_routes(SmokeSpec(), frozenset({Task.CHAT})) == ("chat",)
    assert smoke_routes(SmokeSpec(), None) == ("chat",)  # --url: no backend known
    assert smoke_routes(SmokeSpec(), NOT_SUPPORTED) == ("chat",)
    assert smoke_routes(SmokeSpec(routes=["chat"]), both) == ("chat",)
