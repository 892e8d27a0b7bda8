"""The Ollama backend: env and Modelfile mapping, names, refused keys, managed: false, and
after_ready (pull / create / preload) through the real `ollama` library and a real httpx
client against a STAND-IN server (tests/standins/ollama_standin.py, not Ollama: the binary
cannot be installed here). Real-Ollama tests are marked `engine` and skip without it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import httpx
import pytest
from llmctl_backends.ollama import OllamaBackend, tagged

from llmdeploy_cli import registry
from llmdeploy_cli.backend import Readiness
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.errors import LlmctlError, PreflightError, ProfileError, UnreachableError
from llmdeploy_cli.netutil import free_port
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile
from tests.standins.ollama_standin import OllamaStandin

ENVIRON = {"HOME": "/home/user"}
VERSION = "0.32.15"


@pytest.fixture
def profile_file(tmp_path):
    def _write(text: str) -> Path:
        p = tmp_path / "p.yml"
        p.write_text(textwrap.dedent(text).lstrip())
        return p

    return _write


@pytest.fixture
def resolve(profile_file):
    """resolve(yaml, port=None) -> Resolved of a profile written from yaml."""

    def _resolve(text: str, port: int | None = None, environ=None):
        profile = load_profile(profile_file(text), ENVIRON)
        env = ENVIRON if environ is None else environ
        return resolve_profile(profile, env, engine_version=VERSION, port=port)

    return _resolve


def pull_yaml(extra: str = "", source: str = "qwen2.5:0.5b") -> str:
    return f"name: oq\nbackend: ollama\nmodel:\n  source: {source}\n" + textwrap.dedent(extra)


def gguf_yaml(path: str, extra: str = "") -> str:
    return (
        f"name: og\nbackend: ollama\nmodel:\n  source: {path}\n  served_name: tiny\n"
        + textwrap.dedent(extra)
    )


def steps(plan) -> dict:
    return {s.name: s for s in plan.steps}


def refused(resolve, text: str) -> list:
    with pytest.raises(ProfileError) as e:
        resolve(text)
    return e.value.issues


# A port of Ollama's Modelfile parser (parser/parser.go ParseFile, v0.32.15), so the tests
# check that what llmctl writes reads back as meant, quotes and newlines included.
_COMMANDS = {
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
}


def _unquote(s: str) -> tuple[str, bool]:
    if s[:3] == '"""':
        return (s[3:-3], True) if len(s) >= 6 and s[-3:] == '"""' else ("", False)
    if s[:1] == '"':
        return (s[1:-1], True) if len(s) >= 2 and s[-1] == '"' else ("", False)
    return s, True


def _next_state(r: str, cs: str) -> tuple[str, str]:
    space, newline = r in " \t", r in "\r\n"
    if cs == "nil":
        return ("comment", "") if r == "#" else ("nil", "") if space or newline else ("name", r)
    if cs == "name":
        if r.isascii() and r.isalpha():
            return "name", r
        assert space, "invalid command"
        return "value", ""
    if cs == "value":
        return ("nil", r) if newline or space else ("value", r)
    if cs == "parameter":
        if r.isascii() and (r.isalnum() or r == "_"):
            return "parameter", r
        assert space, "unexpected EOF"
        return "value", ""
    if cs == "comment":
        return ("nil", "") if newline else ("comment", "")
    raise AssertionError(cs)


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    cmds: list[tuple[str, str]] = []
    curr, buf, name = "nil", "", ""
    for ch in text:
        nxt, r = _next_state(ch, curr)
        if nxt != curr:
            if curr == "name":
                word = buf.lower()
                assert word in _COMMANDS, f"invalid command {buf!r}"
                if word == "parameter":
                    nxt = "parameter"
                else:
                    assert word != "message", "MESSAGE is not used by llmctl"
                    name = "model" if word == "from" else word
            elif curr == "parameter":
                name = buf
            elif curr == "value":
                value, ok = _unquote(buf.strip())
                if not ok or r in " \t":
                    buf += r
                    continue
                cmds.append((name, value))
            buf, curr = "", nxt
        if r and r.isprintable():
            buf += r
    if curr == "value":
        value, ok = _unquote(buf.strip())
        assert ok, "unexpected EOF"
        cmds.append((name, value))
    assert any(n == "model" for n, _ in cmds), "no FROM line"
    return cmds


# -- static side ---------------------------------------------------------------------------


def test_registered_through_its_entry_point():
    be = registry.get("ollama")
    assert isinstance(be, OllamaBackend)
    assert (be.default_port, be.executable) == (11434, "ollama")


@pytest.mark.parametrize(
    "name,listed",
    [
        ("qwen2.5:0.5b", "qwen2.5:0.5b"),
        ("llama3.2", "llama3.2:latest"),
        ("library/llama3.2", "llama3.2:latest"),
        ("someone/model", "someone/model:latest"),
        ("someone/model:q4", "someone/model:q4"),
    ],
)
def test_listed_name_carries_a_tag(name, listed):
    assert tagged(name) == listed


def test_plain_pull_serves_the_pulled_name(resolve):
    plan = resolve(pull_yaml(source="llama3.2")).plan
    s = steps(plan)
    assert list(s) == ["server", "pull", "preload"]
    assert s["server"].command.argv == ["ollama", "serve"]
    assert s["server"].command.env == {"OLLAMA_HOST": "127.0.0.1:11434"}
    assert s["pull"].command.argv == ["ollama", "pull", "llama3.2"]
    assert s["pull"].kind == "action" and s["pull"].via == "ollama client library"
    assert s["preload"].command.argv == ["ollama", "run", "llama3.2:latest", ""]
    assert plan.files == []
    ep = plan.endpoint
    assert ep.model == "llama3.2:latest"
    assert ep.base_url == "http://127.0.0.1:11434/v1"
    assert ep.health_url == "http://127.0.0.1:11434/"
    assert ep.api_key_env is None


def test_max_model_len_on_a_pull_derives_a_model_with_num_ctx(resolve, _isolated_state):
    plan = resolve(pull_yaml("resources:\n  max_model_len: 8192\n")).plan
    s = steps(plan)
    assert list(s) == ["server", "pull", "create", "preload"]
    [f] = plan.files
    assert f.path == str(_isolated_state / "ollama" / "oq" / "Modelfile")
    body = [ln for ln in f.content.splitlines() if not ln.startswith("#")]
    assert body == ["FROM qwen2.5:0.5b", "PARAMETER num_ctx 8192"]
    assert s["create"].command.argv == ["ollama", "create", "oq:latest", "-f", f.path]
    # the derived model is named after the profile, with the tag Ollama lists
    assert plan.endpoint.model == "oq:latest"
    assert "OLLAMA_CONTEXT_LENGTH" not in s["server"].command.env


def test_served_name_that_differs_from_the_pull_derives_a_model(resolve):
    plan = resolve(pull_yaml("").replace("qwen2.5:0.5b", "qwen2.5:0.5b\n  served_name: chat")).plan
    assert plan.endpoint.model == "chat:latest"
    assert "FROM qwen2.5:0.5b" in plan.files[0].content


def test_gguf_file_gets_a_modelfile_with_absolute_from(resolve, tmp_path):
    (tmp_path / "m").mkdir()
    gguf = tmp_path / "m" / "tiny.gguf"
    text = gguf_yaml("./m/tiny.gguf", "resources:\n  max_model_len: 2048\n  device: cpu\n")
    text += textwrap.dedent(
        """
        options:
          system: Be brief.
          template: |-
            {{ .System }} "quoted" {{ .Prompt }}
            next line
          parameters:
            stop: ["<|im_end|>", " spaced "]
            temperature: 0
            use_mmap: false
        """
    )
    plan = resolve(text).plan
    mf = plan.files[0].content.splitlines()
    assert f"FROM {gguf}" in mf  # relative to the profile's folder, made absolute
    assert "PARAMETER num_ctx 2048" in mf and "PARAMETER num_gpu 0" in mf
    assert "PARAMETER stop <|im_end|>" in mf and 'PARAMETER stop " spaced "' in mf
    assert "PARAMETER temperature 0.0" in mf and "PARAMETER use_mmap false" in mf
    assert 'SYSTEM """Be brief."""' in mf
    # and Ollama's parser reads it back as meant
    assert parse_modelfile(plan.files[0].content) == [
        ("model", str(gguf)),
        ("num_ctx", "2048"),
        ("num_gpu", "0"),
        ("stop", "<|im_end|>"),
        ("stop", " spaced "),
        ("temperature", "0.0"),
        ("use_mmap", "false"),
        ("template", '{{ .System }} "quoted" {{ .Prompt }}\nnext line'),
        ("system", "Be brief."),
    ]
    assert plan.endpoint.model == "tiny:latest"
    assert "pull" not in steps(plan)
    create = steps(plan)["create"].command.argv
    assert create[:3] == ["ollama", "create", "tiny:latest"]


def test_gguf_quantization_becomes_create_quantize(resolve):
    plan = resolve(
        gguf_yaml("/models/f16.gguf").replace(
            "served_name: tiny", "served_name: t\n  quantization: q4_K_M"
        )
    ).plan
    assert steps(plan)["create"].command.argv[-2:] == ["--quantize", "q4_K_M"]


@pytest.mark.parametrize(
    "host,server,client,url",
    [
        ("127.0.0.1", "127.0.0.1:9000", "127.0.0.1:9000", "http://127.0.0.1:9000/v1"),
        ("0.0.0.0", "0.0.0.0:9000", "127.0.0.1:9000", "http://127.0.0.1:9000/v1"),
        ("::1", "[::1]:9000", "[::1]:9000", "http://[::1]:9000/v1"),
    ],
)
def test_ollama_host_rendering(resolve, host, server, client, url):
    plan = resolve(pull_yaml(f"server:\n  host: '{host}'\n  port: 9000\n")).plan
    s = steps(plan)
    assert s["server"].command.env["OLLAMA_HOST"] == server
    assert s["pull"].command.env["OLLAMA_HOST"] == client
    assert plan.endpoint.base_url == url


def test_env_mapping(resolve):
    plan = resolve(
        pull_yaml(
            """
            resources:
              max_num_seqs: 4
              kv_cache_dtype: q4_0
              visible_devices: [0, 1]
            hub:
              cache_dir: ~/ollama-store
            options:
              context_length: 16384
              keep_alive: 3600
              max_loaded_models: 2
              max_queue: 64
              flash_attention: true
              origins: ["chrome-extension://*", "http://example.test"]
            env:
              OLLAMA_DEBUG: "1"
            """
        )
    ).plan
    env = plan.server.command.env
    assert env == {
        "OLLAMA_HOST": "127.0.0.1:11434",
        "OLLAMA_MODELS": "/home/user/ollama-store",
        "OLLAMA_CONTEXT_LENGTH": "16384",
        "OLLAMA_KEEP_ALIVE": "3600",
        "OLLAMA_NUM_PARALLEL": "4",
        "OLLAMA_MAX_LOADED_MODELS": "2",
        "OLLAMA_MAX_QUEUE": "64",
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": "q4_0",
        "OLLAMA_ORIGINS": "chrome-extension://*,http://example.test",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "OLLAMA_DEBUG": "1",
    }
    assert steps(plan)["preload"].command.argv == [
        "ollama",
        "run",
        "--keepalive=3600s",
        "qwen2.5:0.5b",
        "",
    ]


def test_offline_sets_no_cloud_and_warns_about_pulls(resolve):
    plan = resolve(pull_yaml("offline: true\n")).plan
    env = plan.server.command.env
    assert env["OLLAMA_NO_CLOUD"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1"  # the offline contract every engine keeps
    assert any("offline" in w and "never pulls" in w for w in plan.warnings)


@pytest.mark.parametrize(
    "extra,key,words",
    [
        ("server:\n  api_key_env: MY_KEY\n", "server.api_key_env", "reverse proxy"),
        ("resources:\n  tensor_parallel: 2\n", "resources.tensor_parallel", "ollama"),
        ("resources:\n  gpu_memory_utilization: 0.5\n", "resources.gpu_memory_utilization", ""),
        ("resources:\n  kv_cache_dtype: fp8\n", "resources.kv_cache_dtype", "q8_0"),
        ("extra_args: ['--verbose']\n", "extra_args", "no arguments"),
        ("hub:\n  endpoint: http://mirror.test\n", "hub.endpoint", ""),
        ("hub:\n  token_env: T\n", "hub.token_env", ""),
        ("model_q: x\n", "", ""),
    ],
)
def test_refused_keys_name_the_backend(resolve, extra, key, words):
    if extra.startswith("model_q"):
        text = pull_yaml().replace("qwen2.5:0.5b", "qwen2.5:0.5b\n  quantization: awq")
        key = "model.quantization"
    else:
        text = pull_yaml(extra)
    issues = refused(resolve, text)
    [issue] = [i for i in issues if i.key == key]
    assert "ollama" in issue.message
    assert words in f"{issue.message} {issue.hint}"
    assert issue.line  # located in the file


@pytest.mark.parametrize(
    "options,words",
    [
        ("parameters:\n    num_ctx: 4096", "max_model_len"),
        ("parameters:\n    tempreature: 1", "unknown Modelfile parameter"),
        ("parameters:\n    top_k: 1.5", "integer"),
        ("keep_alive: forever", "Go duration"),
        ('template: \'a """ b\'', '"""'),
        ("max_num_seqs: 2", "not an option of backend 'ollama'"),
    ],
)
def test_bad_options(resolve, options, words):
    issues = refused(resolve, pull_yaml(f"options:\n  {options}\n"))
    assert any(words in f"{i.message} {i.hint}" for i in issues), issues


def test_derived_model_needs_another_name(resolve):
    text = pull_yaml("resources:\n  max_model_len: 4096\n").replace(
        "qwen2.5:0.5b", "qwen2.5:0.5b\n  served_name: qwen2.5:0.5b"
    )
    issues = refused(resolve, text)
    assert any("another name" in i.message for i in issues)


def test_not_a_model_name(resolve):
    issues = refused(resolve, pull_yaml(source="'bad name!'"))
    assert issues[0].key == "model.source"


def test_managed_false_runs_no_server_but_keeps_the_model_steps(resolve):
    plan = resolve(pull_yaml("server:\n  managed: false\nresources:\n  max_model_len: 4096\n")).plan
    s = steps(plan)
    assert list(s) == ["server", "pull", "create", "preload"]
    assert "managed: false" in s["server"].via and "does not start" in s["server"].via
    assert s["server"].command.env == {"OLLAMA_HOST": "127.0.0.1:11434"}
    assert any("managed is false" in w for w in plan.warnings)


@pytest.mark.parametrize(
    "extra,key",
    [
        ("resources:\n  max_num_seqs: 4\n", "resources.max_num_seqs"),
        ("options:\n  flash_attention: true\n", "options.flash_attention"),
        ("hub:\n  cache_dir: /m\n", "hub.cache_dir"),
        ("env:\n  OLLAMA_DEBUG: '1'\n", "env"),
    ],
)
def test_managed_false_refuses_server_only_keys(resolve, extra, key):
    issues = refused(resolve, pull_yaml("server:\n  managed: false\n" + extra))
    [issue] = [i for i in issues if i.key == key]
    assert "managed is false" in issue.message and "systemctl" in issue.hint
    assert "backend 'ollama'" in issue.message


def test_managed_false_refuses_port_auto(resolve):
    issues = refused(resolve, pull_yaml("server:\n  managed: false\n  port: auto\n"))
    assert issues[0].key == "server.port"


def test_render_json_shows_the_modelfile(profile_file, capsys):
    path = profile_file(pull_yaml("resources:\n  max_model_len: 1024\n"))
    assert main(["render", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    [f] = doc["files"]
    assert "PARAMETER num_ctx 1024" in f["content"] and f["path"].endswith("/oq/Modelfile")
    assert [s["name"] for s in doc["steps"]] == ["server", "pull", "create", "preload"]
    assert doc["steps"][1]["via"] == "ollama client library"
    assert doc["endpoint"]["model"] == "oq:latest"
    assert main(["render", str(path)]) == 0
    text = capsys.readouterr().out
    assert "# file " in text and "FROM qwen2.5:0.5b" in text


# -- runtime side against the stand-in -----------------------------------------------------


@pytest.fixture
def standin():
    with OllamaStandin({"qwen2.5:0.5b": 10_000}) as s:
        yield s


class Reports(list):
    def __call__(self, message, fraction):
        self.append((message, fraction))


def run_after_ready(resolved, reports=None):
    reports = Reports() if reports is None else reports
    be = resolved.backend
    with httpx.Client(timeout=10) as client:
        be.after_ready(client, resolved.plan, resolved.profile, reports)
    return reports


def test_probe_and_model_listed(resolve, standin):
    r = resolve(pull_yaml(), port=standin.port)
    be, ep = r.backend, r.plan.endpoint
    with httpx.Client(timeout=5) as client:
        assert be.probe(client, ep).state is Readiness.READY
        listed = be.model_listed(client, ep)
        assert listed.state is Readiness.LOADING and "name:tag" in listed.why
        run_after_ready(r)
        assert be.model_listed(client, ep).state is Readiness.READY
    down = resolve(pull_yaml(), port=free_port("127.0.0.1"))
    with httpx.Client(timeout=2) as client:
        assert be.probe(client, down.plan.endpoint).state is Readiness.DOWN


def test_after_ready_pulls_with_progress_then_preloads(resolve, standin):
    r = resolve(pull_yaml("options:\n  keep_alive: '-1m'\n"), port=standin.port)
    reports = run_after_ready(r)
    assert "qwen2.5:0.5b" in standin.models
    fractions = [f for m, f in reports if m.startswith("pull") and f is not None]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert standin.loaded == {"qwen2.5:0.5b": "-1m"}
    # a second serve finds it local and does not pull again
    pulls = sum(1 for m, p, _ in standin.requests if p == "/api/pull")
    run_after_ready(r)
    assert sum(1 for m, p, _ in standin.requests if p == "/api/pull") == pulls


def test_after_ready_creates_a_derived_model(resolve, standin, _isolated_state):
    r = resolve(
        pull_yaml("resources:\n  max_model_len: 4096\noptions:\n  system: Hi.\n"),
        port=standin.port,
    )
    run_after_ready(r)
    m = standin.models["oq:latest"]
    assert m["from"] == "qwen2.5:0.5b"
    assert m["parameters"] == {"num_ctx": 4096}
    assert m["system"] == "Hi."
    assert "oq:latest" in standin.loaded
    # the Modelfile render shows is on disk, so the by-hand command works too
    mf = _isolated_state / "ollama" / "oq" / "Modelfile"
    assert mf.read_text() == r.plan.files[0].content


def test_after_ready_creates_from_a_gguf_file_and_uploads_once(resolve, standin, tmp_path):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    text = gguf_yaml(str(gguf), "resources:\n  max_model_len: 2048\n")
    r = resolve(text, port=standin.port)
    reports = run_after_ready(r)
    assert standin.blobs == {digest: gguf.stat().st_size}
    m = standin.models["tiny:latest"]
    assert m["files"] == {"tiny.gguf": digest}
    assert m["parameters"] == {"num_ctx": 2048}
    assert standin.loaded == {"tiny:latest": None}
    assert any(m.startswith("create:") for m, _ in reports)
    uploads = [p for m, p, _ in standin.requests if m == "POST" and p.startswith("/api/blobs/")]
    run_after_ready(r)
    again = [p for m, p, _ in standin.requests if m == "POST" and p.startswith("/api/blobs/")]
    assert again == uploads  # HEAD said the blob exists


def test_gguf_directory(resolve, standin, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    (d / "model-q4.gguf").write_bytes(b"GGUF-dir")
    r = resolve(gguf_yaml(str(d)), port=standin.port)
    assert f"FROM {d}" in r.plan.files[0].content
    run_after_ready(r)
    assert list(standin.models["tiny:latest"]["files"]) == ["model-q4.gguf"]


def test_unknown_pull_name_is_a_clear_error(resolve, standin):
    r = resolve(pull_yaml(source="no-such-model:7b"), port=standin.port)
    with pytest.raises(LlmctlError) as e:
        run_after_ready(r)
    assert "no model by that name" in e.value.message and "no-such-model:7b" in e.value.message
    assert "tag" in e.value.hint


def test_server_without_network_is_a_clear_error(resolve):
    with OllamaStandin(offline=True) as s:
        r = resolve(pull_yaml(), port=s.port)
        with pytest.raises(LlmctlError) as e:
            run_after_ready(r)
    assert "could not reach the model registry" in e.value.message
    assert "offline" in e.value.hint


def test_denied_pull_is_a_clear_error(resolve):
    with OllamaStandin(denied=("someone/private:7b",)) as s:
        r = resolve(pull_yaml(source="someone/private:7b"), port=s.port)
        with pytest.raises(LlmctlError) as e:
            run_after_ready(r)
    assert "denied access" in e.value.message and "private" in e.value.hint


def test_an_ollama_library_without_the_new_create_api_is_refused(resolve, standin, monkeypatch):
    import ollama

    def old_create(self, model, path=None, modelfile=None, stream=False):
        raise AssertionError("must not be called")

    monkeypatch.setattr(ollama.Client, "create", old_create)
    r = resolve(pull_yaml("resources:\n  max_model_len: 512\n"), port=standin.port)
    with pytest.raises(LlmctlError) as e:
        run_after_ready(r)
    assert "too old" in e.value.message and "0.4.6" in e.value.hint


def test_offline_profile_refuses_to_pull_a_missing_model(resolve, standin):
    r = resolve(pull_yaml("offline: true\n"), port=standin.port)
    with pytest.raises(PreflightError) as e:
        run_after_ready(r)
    assert "offline" in e.value.message and "never pulls" in e.value.message
    assert not [p for _, p, _ in standin.requests if p == "/api/pull"]


def test_offline_profile_uses_a_model_already_local(resolve):
    with OllamaStandin(models={"qwen2.5:0.5b": {"size": 1}}) as s:
        r = resolve(pull_yaml("offline: true\n"), port=s.port)
        run_after_ready(r)
        assert not [p for _, p, _ in s.requests if p == "/api/pull"]
        assert "qwen2.5:0.5b" in s.loaded


def test_missing_gguf_is_a_preflight_error(resolve, standin, tmp_path):
    r = resolve(gguf_yaml(str(tmp_path / "gone.gguf")), port=standin.port)
    with pytest.raises(PreflightError, match="not found"):
        run_after_ready(r)


def test_preload_of_a_missing_model_names_it(resolve, standin, monkeypatch):
    from llmctl_backends.ollama import backend as mod
    from llmctl_backends.ollama import model

    # preload alone (no pull, no create) against a server that lacks the model
    monkeypatch.setattr(mod, "model_spec", lambda p, o: model.ModelSpec(served="qwen2.5:0.5b"))
    r = resolve(pull_yaml(), port=standin.port)
    with pytest.raises(LlmctlError) as e:
        run_after_ready(r)
    assert "preload" in e.value.message and "qwen2.5:0.5b" in e.value.message
    assert "ollama list" in e.value.hint


def test_unreachable_server(resolve):
    r = resolve(pull_yaml(), port=free_port("127.0.0.1"))
    with pytest.raises(UnreachableError):
        run_after_ready(r)


# -- a real Ollama -------------------------------------------------------------------------


@pytest.mark.engine
@pytest.mark.skipif(shutil.which("ollama") is None, reason="the ollama binary is not installed")
def test_real_ollama_serves_a_gguf(resolve, tmp_path):  # pragma: no cover - needs Ollama
    import os
    import signal
    import subprocess
    import time

    gguf = os.environ.get("LLMCTL_TEST_GGUF")
    if not gguf:
        pytest.skip("set LLMCTL_TEST_GGUF to a small GGUF file to run against a real Ollama")
    port = free_port("127.0.0.1")
    r = resolve(gguf_yaml(gguf, f"server:\n  port: {port}\nhub:\n  cache_dir: {tmp_path}\n"))
    cmd = r.plan.server.command
    proc = subprocess.Popen(cmd.argv, env={**os.environ, **cmd.env}, start_new_session=True)
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 60
            while r.backend.probe(client, r.plan.endpoint).state is not Readiness.READY:
                assert time.monotonic() < deadline, "ollama serve did not come up"
                time.sleep(0.2)
            r.backend.after_ready(client, r.plan, r.profile, Reports())
            assert r.backend.model_listed(client, r.plan.endpoint).state is Readiness.READY
            out = client.post(
                r.plan.endpoint.base_url + "/chat/completions",
                json={
                    "model": r.plan.endpoint.model,
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 4,
                },
                timeout=120,
            )
            assert out.status_code == 200, out.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


# -- through `llmctl serve` ----------------------------------------------------------------


def test_serve_against_a_running_ollama_creates_and_preloads(standin, profile_file, tmp_path):
    import os
    import subprocess
    import sys

    path = profile_file(
        pull_yaml(
            f"""
            server:
              managed: false
              port: {standin.port}
            resources:
              max_model_len: 2048
            health:
              load_timeout: 2
              completion_timeout: 2
            """
        )
    )
    env = {**os.environ, "LLMCTL_STATE_DIR": str(tmp_path / "state")}
    llmctl = [sys.executable, "-m", "llmdeploy_cli"]
    try:
        p = subprocess.run(
            [*llmctl, "serve", str(path), "--detach", "--no-smoke", "--timeout", "20"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        assert standin.models["oq:latest"]["parameters"] == {"num_ctx": 2048}
        assert "oq:latest" in standin.loaded
    finally:
        subprocess.run([*llmctl, "stop", "oq"], env=env, capture_output=True, timeout=60)
