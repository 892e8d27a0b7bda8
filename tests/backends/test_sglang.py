"""The SGLang backend: every profile key to its exact flag, the key as a redacted flag,
memory semantics, refused keys, readiness. Real-engine tests skip without SGLang."""

from __future__ import annotations

import importlib.util
import json
import signal

import httpx
import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.backend import Endpoint, Readiness
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.command import Secret
from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile
from tests.backends.profiles import argv_of, resolver

KEY = "sk-test-sglang-0123456789"
ENVIRON = {"HOME": "/home/user", "MY_KEY": KEY}

BASE = """
name: s
backend: sglang
model:
  source: org/model
"""


@pytest.fixture
def render(tmp_path):
    """render(extra_yaml, version="0.5.19") -> Plan of BASE plus the extra keys."""
    resolve = resolver(tmp_path, BASE, ENVIRON, "0.5.19")
    return lambda *a, **kw: resolve(*a, **kw).plan


def has(argv: list[str], expected: list[str]) -> bool:
    n = len(expected)
    return any(argv[i : i + n] == expected for i in range(len(argv)))


def test_registered_through_its_entry_point():
    be = registry.get("sglang")
    assert type(be).__name__ == "SglangBackend"
    assert be.default_port == 30000 and be.distribution == "sglang"


def test_minimal_profile_runs_the_launch_server_module(render):
    plan = render()
    assert argv_of(plan) == [
        "python3",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "org/model",
        "--host",
        "127.0.0.1",
        "--port",
        "30000",
        "--served-model-name",
        "s",
    ]
    assert plan.endpoint.base_url == "http://127.0.0.1:30000/v1" and plan.endpoint.model == "s"
    assert any("runtime.venv" in w for w in plan.warnings)


def test_argv0_is_the_python_of_the_profiles_venv(render):
    plan = render("runtime: {venv: /opt/venvs/sg}\n")
    assert argv_of(plan)[:3] == ["/opt/venvs/sg/bin/python3", "-m", "sglang.launch_server"]
    assert not any("runtime.venv" in w for w in plan.warnings)


def test_executable_lookup_finds_the_venvs_python(tmp_path):
    from llmdeploy_cli.engine_env import detect_version, find_executable

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python3"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    site = venv / "lib" / "python3.12" / "site-packages"
    (site / "sglang-0.5.17.dist-info").mkdir(parents=True)
    p = tmp_path / "p.yml"
    p.write_text(f"name: s\nbackend: sglang\nmodel: {{source: x/y}}\nruntime: {{venv: {venv}}}\n")
    profile = load_profile(p, {})
    be = registry.get("sglang")
    assert find_executable(be, profile) == str(py)
    found = detect_version(be, profile)
    assert found.version == "0.5.17" and found.source.startswith("dist-info:")


@pytest.mark.parametrize(
    "model, extra, expected",
    [
        ("served_name: chat", "", ["--served-model-name", "chat"]),
        ("revision: v1.2", "", ["--revision", "v1.2"]),
        ("tokenizer: org/tok", "", ["--tokenizer-path", "org/tok"]),
        ("dtype: bfloat16", "", ["--dtype", "bfloat16"]),
        ("trust_remote_code: true", "", ["--trust-remote-code"]),
        ("quantization: fp8", "", ["--quantization", "fp8"]),
        ("chat_template: /t/chat.jinja", "", ["--chat-template", "/t/chat.jinja"]),
        ("reasoning_parser: qwen3", "", ["--reasoning-parser", "qwen3"]),
        ("tool_call_parser: qwen25", "", ["--tool-call-parser", "qwen25"]),
        ("", "server: {host: 0.0.0.0}", ["--host", "0.0.0.0"]),
        ("", "server: {port: 30001}", ["--port", "30001"]),
        ("", "resources: {device: cuda}", ["--device", "cuda"]),
        ("", "resources: {device: cpu}", ["--device", "cpu"]),
        ("", "resources: {gpu_memory_utilization: 0.7}", ["--mem-fraction-static", "0.7"]),
        ("", "resources: {max_model_len: 2048}", ["--context-length", "2048"]),
        ("", "resources: {max_num_seqs: 8}", ["--max-running-requests", "8"]),
        ("", "resources: {tensor_parallel: 2}", ["--tp-size", "2"]),
        ("", "resources: {pipeline_parallel: 2}", ["--pp-size", "2"]),
        ("", "resources: {kv_cache_dtype: fp8_e4m3}", ["--kv-cache-dtype", "fp8_e4m3"]),
    ],
)
def test_each_common_key_maps_to_its_flag(render, model, extra, expected):
    argv = argv_of(render(extra + "\n", model=model))
    assert has(argv, expected), argv


def test_device_auto_renders_nothing(render):
    assert "--device" not in argv_of(render("resources: {device: auto}\n"))


def test_max_num_batched_tokens_is_refused_with_sglangs_own_knobs(render):
    with pytest.raises(ProfileError) as e:
        render("resources: {max_num_batched_tokens: 4096}\n")
    (issue,) = e.value.issues
    assert issue.key == "resources.max_num_batched_tokens" and "'sglang'" in issue.message
    assert "chunked_prefill_size" in issue.hint


def test_fp8_kv_cache_dtype_is_refused_with_sglangs_names(render):
    with pytest.raises(ProfileError) as e:
        render("resources: {kv_cache_dtype: fp8}\n")
    (issue,) = e.value.issues
    assert "fp8_e4m3" in issue.hint


def test_api_key_is_a_secret_flag_redacted_everywhere(render):
    plan = render("server: {api_key_env: MY_KEY}\n")
    cmd = plan.server.command
    i = cmd.argv.index("--api-key")
    assert cmd.argv[i + 1] == KEY and isinstance(cmd.argv[i + 1], Secret)
    assert KEY not in cmd.display() and "--api-key '***'" in cmd.display()
    assert KEY not in json.dumps(plan.as_dict())
    assert KEY in plan.secrets()
    assert any("/proc" in w for w in plan.warnings)


@pytest.fixture
def key_profile(write_profile, monkeypatch):
    monkeypatch.setenv("LLMCTL_TEST_SGLANG_KEY", KEY)
    return write_profile(
        """
        name: keyed
        backend: sglang
        model: {source: org/model}
        server: {api_key_env: LLMCTL_TEST_SGLANG_KEY}
        runtime: {engine_version: 0.5.19, venv: /opt/venvs/sg}
        """
    )


def test_cli_render_json_and_text_redact_the_key(key_profile, capsys):
    assert main(["render", "--json", str(key_profile)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out + err
    (step,) = json.loads(out)["steps"]
    assert step["argv"][step["argv"].index("--api-key") + 1] == "***"
    assert main(["render", str(key_profile)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out + err and "--api-key '***'" in out


def test_modelscope_sets_sglang_use_modelscope(render):
    env = render("hub: {source: modelscope}\n").server.command.env
    assert env["SGLANG_USE_MODELSCOPE"] == "true"


def test_unknown_option_names_the_backend_with_did_you_mean(render):
    with pytest.raises(ProfileError) as e:
        render("options: {chunked_prefil_size: 2048}\n")
    (issue,) = e.value.issues
    assert "backend 'sglang'" in issue.message
    assert issue.hint == "did you mean 'chunked_prefill_size'?"


def test_options_render_their_flags(render):
    argv = argv_of(
        render(
            """
            options:
              chunked_prefill_size: 2048
              max_prefill_tokens: 8192
              disable_radix_cache: true
              random_seed: 3
              skip_server_warmup: true
              default_chat_template_kwargs: {enable_thinking: false}
              log_level: warning
              enable_metrics: true
            """
        )
    )
    tail = argv[argv.index("s") + 1 :]
    assert tail == [
        "--chunked-prefill-size",
        "2048",
        "--max-prefill-tokens",
        "8192",
        "--disable-radix-cache",
        "--random-seed",
        "3",
        "--skip-server-warmup",
        "--default-chat-template-kwargs",
        '{"enable_thinking":false}',
        "--log-level",
        "warning",
        "--enable-metrics",
    ]


def _client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


EP = Endpoint(base_url="http://127.0.0.1:30000/v1", model="s", health_url="http://x/health")


def test_probe_503_during_warmup_is_loading():
    be = registry.get("sglang")

    def refused(request):
        raise httpx.ConnectError("connection refused", request=request)

    assert be.probe(_client(refused), EP).state is Readiness.DOWN
    warm = be.probe(_client(lambda r: httpx.Response(503)), EP)
    assert warm.state is Readiness.LOADING and "503" in warm.why
    assert be.probe(_client(lambda r: httpx.Response(200)), EP).state is Readiness.READY


def test_stop_plan():
    plan = registry.get("sglang").stop_plan(None)
    assert plan.signal == signal.SIGTERM and plan.grace_s >= 30


HAVE_SGLANG = importlib.util.find_spec("sglang") is not None
NO_SGLANG = "sglang is not importable here (engines are not installed)"


@pytest.mark.engine
@pytest.mark.skipif(
    not HAVE_SGLANG, reason="sglang is not importable here (engines are not installed)"
)
def test_rendered_argv_parses_with_sglangs_own_parser(render):
    from sglang.srt.server_args import prepare_server_args

    plan = render(
        "resources: {gpu_memory_utilization: 0.7, max_model_len: 2048, max_num_seqs: 8}\n"
        "options: {chunked_prefill_size: 2048}\n",
        model="dtype: bfloat16\ntool_call_parser: qwen25",
    )
    args = prepare_server_args(argv_of(plan)[3:])
    assert args.mem_fraction_static == 0.7 and args.context_length == 2048
    assert args.max_running_requests == 8 and args.served_model_name == "s"


@pytest.mark.engine
@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_SGLANG, reason=NO_SGLANG)
def test_sglang_serves_the_tiny_model(tiny_model, tmp_path):
    import os
    import subprocess
    import sys
    import time

    from llmdeploy_cli.netutil import free_port

    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: SGLang needs one to serve")
    port = free_port("127.0.0.1")
    p = tmp_path / "p.yml"
    p.write_text(
        f"name: tiny\nbackend: sglang\nmodel: {{source: {tiny_model}}}\n"
        f"resources: {{gpu_memory_utilization: 0.3, max_model_len: 256}}\n"
        f"runtime: {{executable: {sys.executable}}}\n"
    )
    r = resolve_profile(load_profile(p, {}), {}, port=port)
    cmd = r.plan.server.command
    proc = subprocess.Popen(cmd.argv, env={**os.environ, **cmd.env}, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        seen_loading = False
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                assert proc.poll() is None, "sglang exited during load"
                state = r.backend.probe(client, r.plan.endpoint).state
                seen_loading |= state is Readiness.LOADING
                if state is Readiness.READY:
                    break
                time.sleep(0.5)
            else:
                pytest.fail("sglang did not become ready in 600 s")
            assert r.backend.model_listed(client, r.plan.endpoint).state is Readiness.READY
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
