"""The Xinference backend: the server step and the launch step, every key to its exact
option, auth on and off, the key kept out of argv at run time and redacted in render,
hub/offline/home environment, the REST launch against a mock server, readiness.
Real-engine tests skip without Xinference (the end-to-end run lives elsewhere)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import httpx
import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.backend import Readiness
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.command import Secret
from llmdeploy_cli.errors import (
    LlmctlError,
    NotReadyError,
    ProfileError,
    UnreachableError,
    UsageError,
)
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile
from tests.backends.profiles import issues_of, resolver, write_profile
from tests.conftest import PROFILES

KEY = "sk-test-xinference-0123456789"
PASSWORD = "pw-test-xinference-secret"
TOKEN = "eyJ-test-access-token-0123456789"
LOGIN = """
server:
  api_key_env: MY_KEY
options:
  home: /srv/xinference
  login_user_env: XI_USER
  login_password_env: XI_PASSWORD
"""
ENVIRON = {"HOME": "/home/user", "MY_KEY": KEY}

BASE = """
name: x
backend: xinference
model:
  source: qwen2.5-instruct
"""

AUTH = """
server:
  api_key_env: MY_KEY
options:
  home: /srv/xinference
"""


@pytest.fixture
def write(tmp_path):
    return lambda extra="", model="": write_profile(tmp_path, BASE, extra, model)


@pytest.fixture
def resolved(tmp_path):
    return resolver(tmp_path, BASE, ENVIRON, "4.1.0")


@pytest.fixture
def render(resolved):
    return lambda *a, **kw: resolved(*a, **kw).plan


def launch_of(plan) -> list[str]:
    (step,) = [s for s in plan.steps if s.kind == "action"]
    return list(step.command.argv)


def has(argv: list[str], expected: list[str]) -> bool:
    n = len(expected)
    return any(argv[i : i + n] == expected for i in range(len(argv)))


def test_registered_through_its_entry_point():
    be = registry.get("xinference")
    assert type(be).__name__ == "XinferenceBackend"
    assert be.default_port == 9997 and be.distribution == "xinference"
    assert be.executable == "xinference-local" and be.newest_known == "4.1.0"


def test_minimal_profile_is_a_server_and_a_launch(render):
    plan = render()
    server, launch = plan.steps
    assert server.kind == "server" and launch.kind == "action" and launch.name == "launch"
    assert list(server.command.argv) == [
        "xinference-local",
        "--host",
        "127.0.0.1",
        "--port",
        "9997",
    ]
    assert server.command.env == {
        "XINFERENCE_MODEL_SRC": "huggingface",
        "XINFERENCE_AUTH_ADVANCED": "0",
    }
    assert list(launch.command.argv) == [
        "xinference",
        "launch",
        "--endpoint",
        "http://127.0.0.1:9997",
        "--model-name",
        "qwen2.5-instruct",
        "--model-engine",
        "transformers",
        "--model-uid",
        "x",
    ]
    assert "REST" in launch.via
    ep = plan.endpoint
    assert ep.base_url == "http://127.0.0.1:9997/v1" and ep.model == "x"
    assert ep.health_url == "http://127.0.0.1:9997/status"
    assert ep.api_key_env is None


def test_bind_all_interfaces_launches_through_loopback(render):
    plan = render("server:\n  host: 0.0.0.0\n  port: 9000\n")
    assert list(plan.server.command.argv)[1:] == ["--host", "0.0.0.0", "--port", "9000"]
    assert has(launch_of(plan), ["--endpoint", "http://127.0.0.1:9000"])


@pytest.mark.parametrize(
    "model, extra, flags",
    [
        ("served_name: chat", "", ["--model-uid", "chat"]),
        ("served_name: chat", "options:\n  model_uid: u1\n", ["--model-uid", "u1"]),
        ("quantization: Int4", "", ["--quantization", "Int4"]),
        ("", "resources:\n  max_model_len: 8192\n", ["--context-length", "8192"]),
        ("", "resources:\n  tensor_parallel: 2\n", ["--n-gpu", "2"]),
        ("", "resources:\n  device: cpu\n", ["--n-gpu", "none"]),
        ("", "options:\n  n_gpu: auto\n", ["--n-gpu", "auto"]),
        ("", "options:\n  n_gpu: 4\n", ["--n-gpu", "4"]),
        ("", "options:\n  gpu_idx: [0, 1]\n", ["--gpu-idx", "0,1"]),
        ("", "options:\n  replica: 2\n", ["--replica", "2"]),
        ("", "options:\n  model_engine: vllm\n", ["--model-engine", "vllm"]),
        ("", "options:\n  model_format: ggufv2\n", ["--model-format", "ggufv2"]),
        ("", "options:\n  model_size_in_billions: 1.5\n", ["--size-in-billions", "1_5"]),
        ("", "options:\n  model_size_in_billions: 7\n", ["--size-in-billions", "7"]),
        ("", "options:\n  model_size_in_billions: '0_5'\n", ["--size-in-billions", "0_5"]),
        ("", "options:\n  enable_thinking: true\n", ["--enable-thinking"]),
        ("task: embedding", "", ["--model-type", "embedding"]),
        ("task: rerank", "", ["--model-type", "rerank"]),
        (
            "",
            "options:\n  launch_kwargs:\n    gpu_memory_utilization: 0.8\n",
            ["--gpu_memory_utilization", "0.8"],
        ),
        ("", "options:\n  launch_kwargs:\n    enforce_eager: true\n", ["--enforce_eager", "true"]),
    ],
)
def test_each_key_renders_its_exact_launch_option(render, model, extra, flags):
    assert has(launch_of(render(extra, model=model)), flags)


def test_embedding_models_get_no_default_engine(render):
    assert "--model-engine" not in launch_of(render(model="task: embedding"))


@pytest.mark.parametrize(
    "extra, flags",
    [
        ("options:\n  log_level: DEBUG\n", ["--log-level", "DEBUG"]),
        ("extra_args: ['--metrics-exporter-port', '9998']\n", ["--metrics-exporter-port", "9998"]),
    ],
)
def test_server_options(render, extra, flags):
    assert has(list(render(extra).server.command.argv), flags)


def test_trust_remote_code_is_a_server_switch(render):
    plan = render(model="trust_remote_code: true")
    assert plan.server.command.env["XINFERENCE_TRUST_REMOTE_CODE"] == "1"
    assert "XINFERENCE_TRUST_REMOTE_CODE" not in render().server.command.env


def test_modelscope_offline_and_home_environment(render):
    env = render(
        "hub:\n  source: modelscope\noffline: true\noptions:\n  home: ~/xh\n"
    ).server.command.env
    assert env["XINFERENCE_MODEL_SRC"] == "modelscope"
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["XINFERENCE_HOME"] == os.path.expanduser("~/xh")
    # offline: no per-launch virtualenv (it installs from the package index)
    assert env["XINFERENCE_ENABLE_VIRTUAL_ENV"] == "0"
    assert "XINFERENCE_ENABLE_VIRTUAL_ENV" not in render().server.command.env


def test_serve_puts_xinference_home_under_the_state_dir(resolved):
    r = resolved()
    assert "XINFERENCE_HOME" not in r.plan.server.command.env  # render stays static
    assert r.backend.extra_env_for_serve(r.profile, "/state/llmctl") == {
        "XINFERENCE_HOME": "/state/llmctl/xinference/x"
    }
    r = resolved("options:\n  home: /srv/xh\n")
    assert r.backend.extra_env_for_serve(r.profile, "/state/llmctl") == {}
    r = resolved("env:\n  XINFERENCE_HOME: /srv/xh\n")
    assert r.backend.extra_env_for_serve(r.profile, "/state/llmctl") == {}


def test_local_model_dir_is_the_model_path(tmp_path):
    d = tmp_path / "qwen"
    d.mkdir()
    p = tmp_path / "p.yml"
    p.write_text(
        f"name: x\nbackend: xinference\nmodel:\n  source: {d}\n"
        "options:\n  model_name: qwen2.5-instruct\n  model_format: pytorch\n"
    )
    plan = resolve_profile(load_profile(p, ENVIRON), ENVIRON, engine_version="4.1.0").plan
    argv = launch_of(plan)
    assert has(argv, ["--model-name", "qwen2.5-instruct"]) and has(argv, ["--model-path", str(d)])


# -- auth ---------------------------------------------------------------------------------


def test_auth_with_a_key_keeps_xinference_auth_on(render):
    plan = render(AUTH)
    assert "XINFERENCE_AUTH_ADVANCED" not in plan.server.command.env
    assert plan.server.command.env["XINFERENCE_HOME"] == "/srv/xinference"
    argv = launch_of(plan)
    key = argv[argv.index("--api-key") + 1]
    assert key == KEY and isinstance(key, Secret)
    assert plan.secrets() == {KEY}
    assert KEY not in json.dumps(plan.as_dict())
    assert plan.endpoint.api_key_env == "MY_KEY"


def test_cli_render_redacts_the_key(write, capsys, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    p = write(AUTH + "runtime:\n  engine_version: 4.1.0\n")
    assert main(["render", "--json", str(p)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out + err
    argv = json.loads(out)["steps"][1]["argv"]
    assert argv[argv.index("--api-key") + 1] == "***"
    assert main(["render", str(p)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out + err and "--api-key '***'" in out


@pytest.mark.parametrize(
    "extra, key, says",
    [
        ("options:\n  auth: true\n  home: /h\n", "options.auth", "api_key_env"),
        ("server:\n  api_key_env: MY_KEY\noptions:\n  auth: false\n", "options.auth", "never"),
        ("server:\n  api_key_env: MY_KEY\n", "options.home", "auth database"),
    ],
)
def test_auth_contradictions_are_refused(render, extra, key, says):
    issues = [i for i in issues_of(render, extra) if i.key == key]
    assert issues and says in issues[0].message + (issues[0].hint or "")


def test_unmanaged_server_with_auth_needs_no_home(render):
    plan = render("server:\n  api_key_env: MY_KEY\n  managed: false\n")
    assert plan.endpoint.api_key_env == "MY_KEY"


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, model, key, says",
    [
        (
            "resources:\n  gpu_memory_utilization: 0.9\n",
            "",
            "resources.gpu_memory_utilization",
            "launch_kwargs",
        ),
        ("resources:\n  max_num_seqs: 8\n", "", "resources.max_num_seqs", "launch_kwargs"),
        ("", "dtype: float16", "model.dtype", "launch_kwargs"),
        ("", "revision: main", "model.revision", "registry"),
        ("", "reasoning_parser: qwen3", "model.reasoning_parser", "enable_thinking"),
        ("resources:\n  pipeline_parallel: 2\n", "", "resources.pipeline_parallel", ""),
        ("resources:\n  kv_cache_dtype: fp8\n", "", "resources.kv_cache_dtype", ""),
    ],
)
def test_keys_xinference_cannot_honour_are_refused(render, extra, model, key, says):
    (issue,) = [i for i in issues_of(render, extra, model=model) if i.key == key]
    assert "xinference" in issue.message and says in (issue.hint or "")


@pytest.mark.parametrize(
    "extra, model, key",
    [
        ("options:\n  model_name: qwen2-instruct\n", "", "model.source"),
        ("hub:\n  cache_dir: /c\n", "", "hub.cache_dir"),
        ("resources:\n  tensor_parallel: 2\noptions:\n  n_gpu: 4\n", "", "options.n_gpu"),
        ("resources:\n  device: cpu\n  tensor_parallel: 2\n", "", "resources.device"),
        ("options:\n  n_gpu: 0\n", "", "options.n_gpu"),
        ("options:\n  model_size_in_billions: big\n", "", "options.model_size_in_billions"),
        ("options:\n  launch_kwargs:\n    --max_num_seqs: 4\n", "", "options.launch_kwargs"),
        ("options:\n  log_level: LOUD\n", "", "options.log_level"),
    ],
)
def test_bad_values_are_refused(render, extra, model, key):
    issues = issues_of(render, extra, model=model)
    assert key in [i.key for i in issues]
    assert all("backend 'xinference'" in i.message for i in issues)


def test_hub_id_source_is_refused_with_a_hint(tmp_path):
    p = tmp_path / "p.yml"
    p.write_text("name: x\nbackend: xinference\nmodel:\n  source: Qwen/Qwen2.5-1.5B-Instruct\n")
    with pytest.raises(ProfileError) as e:
        resolve_profile(load_profile(p, ENVIRON), ENVIRON, engine_version="4.1.0")
    (issue,) = e.value.issues
    assert issue.key == "model.source" and "registry name" in issue.hint


def test_local_dir_without_registry_name_warns_and_will_not_launch(tmp_path):
    p = tmp_path / "p.yml"
    p.write_text(f"name: x\nbackend: xinference\nmodel:\n  source: {tmp_path}\n")
    r = resolve_profile(load_profile(p, ENVIRON), ENVIRON, engine_version="4.1.0")
    assert any("options.model_name" in w for w in r.plan.warnings)
    assert "--model-name" not in launch_of(r.plan)
    fake = FakeXinference()
    with pytest.raises(UsageError) as e:
        r.backend.after_ready(fake.client(), r.plan, r.profile, lambda m, f: None)
    assert "options.model_name" in e.value.message and fake.requests == []


def test_context_length_needs_4_1(render):
    (issue,) = issues_of(render, "resources:\n  max_model_len: 4096\n", version="4.0.1")
    assert issue.key == "resources.max_model_len" and "4.1" in issue.message


def test_unknown_option_names_the_backend_with_did_you_mean(render):
    (issue,) = issues_of(render, "options:\n  model_engin: vllm\n")
    assert issue.key == "options.model_engin" and "xinference" in issue.message
    assert "did you mean 'model_engine'?" in issue.hint


def test_example_profile_renders(capsys):
    assert main(["render", "--json", str(PROFILES / "xinference-qwen2.5.yml")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"][1]["argv"][:2] == ["xinference", "launch"]
    assert doc["endpoint"]["model"] == "qwen2.5-1.5b"


# -- the launch, against a mock Xinference -------------------------------------------------


class FakeXinference:
    """Answers the two calls the launch makes; records what it was sent."""

    def __init__(self, describe=(400,), launch=(200, {"model_uid": "x"})):
        self.describe = list(describe)
        self.launch = launch
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/token":  # Xinference 4.1 advanced_login: a JSON body
            body = json.loads(request.content)
            if body == {"username": "admin", "password": PASSWORD}:
                return httpx.Response(200, json={"access_token": TOKEN, "token_type": "bearer"})
            return httpx.Response(401, json={"detail": "Incorrect username or password"})
        if request.method == "GET":
            code = self.describe.pop(0) if len(self.describe) > 1 else self.describe[0]
            body = {"id": "x"} if code == 200 else {"detail": "Model not found, uid: x"}
            return httpx.Response(code, json=body)
        code, body = self.launch
        return httpx.Response(code, json=body)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def _after_ready(resolved, fake, extra="", **kw):
    r = resolved(extra, **kw)
    reports = []
    r.backend.after_ready(fake.client(), r.plan, r.profile, lambda m, f: reports.append((m, f)))
    return r, reports


def test_launch_posts_the_same_fields_as_the_cli(resolved):
    fake = FakeXinference()
    extra = (
        "resources:\n  max_model_len: 4096\n  tensor_parallel: 2\n"
        "options:\n  model_format: pytorch\n  model_size_in_billions: 1.5\n"
        "  gpu_idx: [0, 1]\n  launch_kwargs:\n    max_num_seqs: 4\n"
    )
    r, reports = _after_ready(resolved, fake, extra, model="quantization: none")
    get, post = fake.requests
    assert get.url.path == "/v1/models/x"
    assert post.method == "POST" and str(post.url) == "http://127.0.0.1:9997/v1/models"
    assert json.loads(post.content) == {
        "model_name": "qwen2.5-instruct",
        "model_engine": "transformers",
        "model_format": "pytorch",
        "model_size_in_billions": "1_5",
        "quantization": "none",
        "context_length": 4096,
        "model_uid": "x",
        "n_gpu": 2,
        "gpu_idx": [0, 1],
        "max_num_seqs": 4,
    }
    assert "authorization" not in post.headers
    assert reports[-1] == ("launch: model uid 'x' is ready", 1.0)


def test_integral_size_is_sent_as_a_number_like_the_cli(resolved):
    r = resolved("options:\n  model_size_in_billions: 7\n")
    assert r.backend.launch_payload(r.profile)["model_size_in_billions"] == 7


def test_launch_on_cpu_sends_n_gpu_null(resolved):
    fake = FakeXinference()
    _after_ready(resolved, fake, "resources:\n  device: cpu\n")
    assert json.loads(fake.requests[1].content)["n_gpu"] is None


def test_launch_sends_the_key_in_a_header_only(resolved, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    fake = FakeXinference()
    _after_ready(resolved, fake, AUTH)
    for req in fake.requests:
        assert req.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in fake.requests[1].content.decode()


def test_running_uid_is_not_launched_again(resolved):
    fake = FakeXinference(describe=(200,))
    _, reports = _after_ready(resolved, fake)
    assert [r.method for r in fake.requests] == ["GET"]
    assert "already running" in reports[0][0]


def test_a_uid_still_loading_is_waited_for(resolved, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    fake = FakeXinference(describe=(503, 503, 200))
    _after_ready(resolved, fake)
    assert [r.method for r in fake.requests] == ["GET", "GET", "GET"]


def test_launch_failure_is_one_line_and_scrubbed(resolved, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    fake = FakeXinference(launch=(500, {"detail": f"boom\nCUDA out of memory, key {KEY}"}))
    with pytest.raises(LlmctlError) as e:
        _after_ready(resolved, fake, AUTH)
    assert "launch failed (500)" in e.value.message and "out of memory" in e.value.message
    assert KEY not in e.value.message + (e.value.hint or "")


def test_refused_key_says_which_variable(resolved, monkeypatch):
    monkeypatch.setenv("MY_KEY", "wrong-key-0000")
    fake = FakeXinference(describe=(401,))
    with pytest.raises(LlmctlError) as e:
        _after_ready(resolved, fake, AUTH)
    assert "$MY_KEY" in e.value.hint


def test_unreachable_and_timeout(resolved):
    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    r = resolved()
    client = httpx.Client(transport=httpx.MockTransport(refused))
    with pytest.raises(UnreachableError):
        r.backend.after_ready(client, r.plan, r.profile, lambda m, f: None)

    def slow(request):
        if request.method == "GET":
            return httpx.Response(400, json={"detail": "no"})
        raise httpx.ReadTimeout("slow", request=request)

    client = httpx.Client(transport=httpx.MockTransport(slow))
    with pytest.raises(NotReadyError):
        r.backend.after_ready(client, r.plan, r.profile, lambda m, f: None)


# -- readiness ----------------------------------------------------------------------------


def test_probe_and_model_listed_by_uid(render):
    be = registry.get("xinference")
    ep = render(model="served_name: chat").endpoint
    seen = []

    def handler(request):
        seen.append(request.url.path)
        if request.url.path == "/status":
            return httpx.Response(200, json={})
        return httpx.Response(200, json={"object": "list", "data": [{"id": "chat"}]})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    assert be.probe(client, ep).state is Readiness.READY
    assert be.model_listed(client, ep).state is Readiness.READY
    assert seen == ["/status", "/v1/models"]
    empty = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"data": []}))
    )
    assert be.model_listed(empty, ep).state is Readiness.LOADING


# -- real engine --------------------------------------------------------------------------


@pytest.mark.engine
@pytest.mark.skipif(
    shutil.which("xinference") is None or shutil.which("xinference-local") is None,
    reason="Xinference is not installed here; golden, unit and mock-server tests cover the "
    "rendered commands and the launch",
)
def test_every_rendered_option_is_in_the_real_cli(render):
    def help_of(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout

    plan = render(
        AUTH + "resources:\n  max_model_len: 4096\n  tensor_parallel: 1\n",
        model="quantization: none",
    )
    local_help = help_of("xinference-local", "--help")
    for opt in [a for a in plan.server.command.argv if a.startswith("--")]:
        assert opt in local_help, opt
    launch_help = help_of("xinference", "launch", "--help")
    for opt in [a for a in launch_of(plan) if a.startswith("--")]:
        assert opt in launch_help, opt


def test_login_launches_with_a_fresh_token_clients_keep_the_key(resolved, monkeypatch):
    """An API key cannot launch in Xinference 4.1: with a login, serve gets an access token
    from POST /token and launches with it; the endpoint (readiness, smoke, bench) keeps
    the key."""
    monkeypatch.setenv("MY_KEY", KEY)
    monkeypatch.setenv("XI_USER", "admin")
    monkeypatch.setenv("XI_PASSWORD", PASSWORD)
    fake = FakeXinference()
    r, reports = _after_ready(resolved, fake, LOGIN)
    login, get, post = fake.requests
    assert login.method == "POST" and login.url.path == "/token"
    assert json.loads(login.content) == {"username": "admin", "password": PASSWORD}
    assert get.headers["authorization"] == post.headers["authorization"] == f"Bearer {TOKEN}"
    assert r.plan.endpoint.api_key_env == "MY_KEY"
    server, login_step, launch = r.plan.steps
    assert [login_step.name, launch.name] == ["login", "launch"]
    assert login_step.command.argv[1:4] == ["login", "--endpoint", "http://127.0.0.1:9997"]
    shown = login_step.command.display()
    assert "--username '${XI_USER}'" in shown or "--username ${XI_USER}" in shown
    assert shown.count("***") == 1  # the password
    assert "POST /token" in login_step.via
    assert "--api-key" not in launch.command.argv and "login's token" in launch.via
    assert all(PASSWORD not in m and TOKEN not in m for m, _ in reports)


def test_refused_login_names_the_variables_and_leaks_nothing(resolved, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    monkeypatch.setenv("XI_USER", "admin")
    monkeypatch.setenv("XI_PASSWORD", "wrong-password")
    with pytest.raises(LlmctlError) as e:
        _after_ready(resolved, FakeXinference(), LOGIN)
    assert "refused the login of 'admin' (401)" in e.value.message
    assert "$XI_USER" in e.value.hint and "$XI_PASSWORD" in e.value.hint
    assert "wrong-password" not in e.value.message + e.value.hint


def test_login_variables_unset_is_a_usage_error(resolved, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    monkeypatch.delenv("XI_USER", raising=False)
    monkeypatch.delenv("XI_PASSWORD", raising=False)
    fake = FakeXinference()
    with pytest.raises(UsageError) as e:
        _after_ready(resolved, fake, LOGIN)
    assert "$XI_USER and $XI_PASSWORD not set" in e.value.message
    assert fake.requests == []


@pytest.mark.parametrize(
    "extra, key, says",
    [
        (
            "server:\n  api_key_env: MY_KEY\noptions:\n  home: /h\n  login_user_env: U\n",
            "options.login_password_env",
            "both",
        ),
        (
            "options:\n  auth: false\n  login_user_env: U\n  login_password_env: P\n",
            "options.login_user_env",
            "no user",
        ),
    ],
)
def test_login_contradictions_are_refused(render, extra, key, says):
    issues = [i for i in issues_of(render, extra) if i.key == key]
    assert issues and says in issues[0].message
