"""The LMDeploy backend: every common key to its exact flag, the host always rendered, the
key as a redacted --api-keys value, memory semantics (refused gpu_memory_utilization),
hub and offline environment, readiness. Real-engine tests skip without LMDeploy."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import httpx
import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.backend import Readiness
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.command import Secret
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile
from tests.backends.profiles import argv_of, issues_of, resolver, write_profile
from tests.conftest import PROFILES

KEY = "sk-test-lmdeploy-0123456789"
ENVIRON = {"HOME": "/home/user", "MY_KEY": KEY}

BASE = """
name: l
backend: lmdeploy
model:
  source: org/model
"""


@pytest.fixture
def write(tmp_path):
    return lambda extra="", model="": write_profile(tmp_path, BASE, extra, model)


@pytest.fixture
def render(tmp_path):
    """render(extra_yaml, model="key: value") -> Plan of BASE plus the extra keys."""
    resolve = resolver(tmp_path, BASE, ENVIRON, "0.18.0")
    return lambda *a, **kw: resolve(*a, **kw).plan


def has(argv: list[str], expected: list[str]) -> bool:
    n = len(expected)
    return any(argv[i : i + n] == expected for i in range(len(argv)))


def test_registered_through_its_entry_point():
    be = registry.get("lmdeploy")
    assert type(be).__name__ == "LmdeployBackend"
    assert be.default_port == 23333 and be.distribution == "lmdeploy"
    assert be.executable == "lmdeploy" and be.newest_known == "0.18.0"


def test_minimal_profile(render):
    plan = render()
    assert argv_of(plan) == [
        "lmdeploy",
        "serve",
        "api_server",
        "org/model",
        "--server-name",
        "127.0.0.1",
        "--server-port",
        "23333",
        "--model-name",
        "l",
    ]
    assert plan.server.command.env == {}
    ep = plan.endpoint
    assert ep.base_url == "http://127.0.0.1:23333/v1" and ep.model == "l"
    assert ep.health_url == "http://127.0.0.1:23333/health"
    assert len(plan.steps) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1"])
def test_host_is_always_rendered(render, host):
    # LMDeploy's own default is 0.0.0.0: leaving the flag out would expose the server.
    assert has(argv_of(render(f"server:\n  host: '{host}'\n")), ["--server-name", host])


@pytest.mark.parametrize(
    "model, extra, flags",
    [
        ("served_name: chat", "", ["--model-name", "chat"]),
        ("revision: v1.0", "", ["--revision", "v1.0"]),
        ("dtype: bfloat16", "", ["--dtype", "bfloat16"]),
        ("dtype: auto", "", ["--dtype", "auto"]),
        ("trust_remote_code: true", "", ["--trust-remote-code"]),
        ("quantization: awq", "", ["--model-format", "awq"]),
        ("quantization: gptq", "", ["--model-format", "gptq"]),
        ("reasoning_parser: qwen-qwq", "", ["--reasoning-parser", "qwen-qwq"]),
        ("tool_call_parser: qwen3", "", ["--tool-call-parser", "qwen3"]),
        ("", "server:\n  port: 2333\n", ["--server-port", "2333"]),
        ("", "resources:\n  device: cuda\n", ["--device", "cuda"]),
        ("", "resources:\n  max_model_len: 8192\n", ["--session-len", "8192"]),
        ("", "resources:\n  max_num_seqs: 64\n", ["--max-batch-size", "64"]),
        ("", "resources:\n  tensor_parallel: 2\n", ["--tp", "2"]),
        ("", "resources:\n  kv_cache_dtype: int8\n", ["--quant-policy", "8"]),
        ("", "resources:\n  kv_cache_dtype: int4\n", ["--quant-policy", "4"]),
        ("", "resources:\n  kv_cache_dtype: fp8\n", ["--quant-policy", "16"]),
        ("", "resources:\n  kv_cache_dtype: fp8_e5m2\n", ["--quant-policy", "17"]),
        ("", "options:\n  backend: pytorch\n", ["--backend", "pytorch"]),
        ("", "options:\n  cache_max_entry_count: 0.5\n", ["--cache-max-entry-count", "0.5"]),
        ("", "options:\n  quant_policy: int8\n", ["--quant-policy", "8"]),
        ("", "options:\n  quant_policy: 16\n", ["--quant-policy", "16"]),
        ("", "options:\n  quant_policy: turbo_quant\n", ["--quant-policy", "42"]),
        ("", "options:\n  model_format: hf\n", ["--model-format", "hf"]),
        ("", "options:\n  chat_template: /t/tpl.json\n", ["--chat-template", "/t/tpl.json"]),
        ("", "options:\n  log_level: INFO\n", ["--log-level", "INFO"]),
        ("", "options:\n  max_prefill_token_num: 4096\n", ["--max-prefill-token-num", "4096"]),
        ("", "options:\n  cache_block_seq_len: 128\n", ["--cache-block-seq-len", "128"]),
        ("", "options:\n  enable_prefix_caching: true\n", ["--enable-prefix-caching"]),
        ("", "options:\n  max_concurrent_requests: 8\n", ["--max-concurrent-requests", "8"]),
        ("", "options:\n  download_dir: /d\n", ["--download-dir", "/d"]),
        ("", "options:\n  backend: pytorch\n  eager_mode: true\n", ["--eager-mode"]),
        (
            "",
            "options:\n  backend: pytorch\n  device: ascend\n",
            ["--device", "ascend"],
        ),
        ("", "extra_args: ['--max-log-len', '100']\n", ["--max-log-len", "100"]),
    ],
)
def test_each_key_renders_its_exact_flag(render, model, extra, flags):
    assert has(argv_of(render(extra, model=model)), flags)


def test_defaults_render_no_flag(render):
    argv = argv_of(render("resources:\n  tensor_parallel: 1\n  kv_cache_dtype: auto\n"))
    assert "--tp" not in argv and "--quant-policy" not in argv
    assert "--trust-remote-code" not in argv


def test_trust_remote_code_before_0_13_is_implicit(render):
    plan = render(model="trust_remote_code: true", version="0.12.3")
    assert "--trust-remote-code" not in argv_of(plan)
    assert any("0.13" in w for w in plan.warnings)


@pytest.mark.parametrize(
    "extra, model, key, says",
    [
        (
            "resources:\n  gpu_memory_utilization: 0.9\n",
            "",
            "resources.gpu_memory_utilization",
            "cache_max_entry_count",
        ),
        ("resources:\n  pipeline_parallel: 2\n", "", "resources.pipeline_parallel", "tensor"),
        (
            "resources:\n  max_num_batched_tokens: 8192\n",
            "",
            "resources.max_num_batched_tokens",
            "max_prefill_token_num",
        ),
        ("", "tokenizer: org/tok", "model.tokenizer", "tokenizer"),
        ("", "chat_template: t.jinja", "model.chat_template", "options.chat_template"),
    ],
)
def test_keys_lmdeploy_cannot_honour_are_refused(render, extra, model, key, says):
    issues = issues_of(render, extra, model=model)
    (issue,) = [i for i in issues if i.key == key]
    assert "lmdeploy" in issue.message and says in issue.hint
    assert issue.line  # located in the file


@pytest.mark.parametrize(
    "extra, model, key",
    [
        ("", "dtype: float32", "model.dtype"),
        ("", "quantization: bnb-4bit", "model.quantization"),
        ("resources:\n  device: cpu\n", "", "resources.device"),
        ("resources:\n  kv_cache_dtype: fp16\n", "", "resources.kv_cache_dtype"),
        ("options:\n  device: ascend\n", "", "options.device"),
        ("options:\n  backend: turbomind\n  device: camb\n", "", "options.device"),
        (
            "resources:\n  device: cuda\noptions:\n  backend: pytorch\n  device: maca\n",
            "",
            "options.device",
        ),
        (
            "options:\n  backend: pytorch\n  cache_max_entry_count: 1.5\n",
            "",
            "options.cache_max_entry_count",
        ),
        ("options:\n  model_format: gptq\n", "quantization: awq", "options.model_format"),
        (
            "resources:\n  kv_cache_dtype: int4\noptions:\n  quant_policy: 8\n",
            "",
            "options.quant_policy",
        ),
        ("options:\n  quant_policy: int2\n", "", "options.quant_policy"),
        ("options:\n  quant_policy: 5\n", "", "options.quant_policy"),
        ("options:\n  device: cpu\n", "", "options.device"),
        ("options:\n  backend: vllm\n", "", "options.backend"),
    ],
)
def test_values_lmdeploy_rejects_are_refused(render, extra, model, key):
    issues = issues_of(render, extra, model=model)
    assert key in [i.key for i in issues]
    assert all("backend 'lmdeploy'" in i.message for i in issues)


@pytest.mark.parametrize(
    "extra, key",
    [
        ("resources:\n  kv_cache_dtype: fp8\n", "resources.kv_cache_dtype"),
        ("options:\n  quant_policy: turbo_quant\n", "options.quant_policy"),
    ],
)
def test_fp8_kv_policies_need_0_14(render, extra, key):
    (issue,) = issues_of(render, extra, version="0.13.0")
    assert issue.key == key and "0.14" in issue.message
    assert has(
        argv_of(render("resources:\n  kv_cache_dtype: int8\n", version="0.13.0")),
        ["--quant-policy", "8"],
    )


def test_extra_args_after_api_keys_must_start_with_a_flag(render):
    (issue,) = issues_of(render, "server:\n  api_key_env: MY_KEY\nextra_args: ['x']\n")
    assert issue.key == "extra_args" and "--api-keys" in issue.message


def test_turbomind_accepts_a_cache_entry_count_above_one(render):
    argv = argv_of(render("options:\n  cache_max_entry_count: 2000\n"))
    assert has(argv, ["--cache-max-entry-count", "2000.0"])


def test_unknown_option_names_the_backend_with_did_you_mean(render):
    (issue,) = issues_of(render, "options:\n  cache_max_entry: 0.5\n")
    assert issue.key == "options.cache_max_entry"
    assert "lmdeploy" in issue.message
    assert "did you mean 'cache_max_entry_count'?" in issue.hint


def test_api_key_is_a_secret_in_argv(render):
    plan = render("server:\n  api_key_env: MY_KEY\n")
    argv = argv_of(plan)
    i = argv.index("--api-keys")
    assert argv[i + 1] == KEY and isinstance(argv[i + 1], Secret)
    assert KEY not in plan.server.command.display()
    assert KEY not in json.dumps(plan.as_dict())
    assert plan.secrets() == {KEY}
    assert plan.endpoint.api_key_env == "MY_KEY"


def test_missing_key_still_renders_a_placeholder(render):
    plan = render("server:\n  api_key_env: MY_KEY\n", environ={})
    argv = argv_of(plan)
    assert argv[argv.index("--api-keys") + 1] == "${MY_KEY}"


def test_cli_render_redacts_the_key(write, capsys, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    p = write("server:\n  api_key_env: MY_KEY\nruntime:\n  engine_version: 0.18.0\n")
    assert main(["render", "--json", str(p)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out + err
    doc = json.loads(out)
    argv = doc["steps"][0]["argv"]
    assert argv[argv.index("--api-keys") + 1] == "***"
    assert main(["render", str(p)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out + err and "--api-keys '***'" in out


def test_cli_render_refusal_is_one_line_no_traceback(write, capsys):
    p = write("resources:\n  gpu_memory_utilization: 0.8\n")
    assert main(["render", "--json", str(p)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    doc = json.loads(out)
    assert doc["error"]["code"] == 2


def test_modelscope_and_offline_environment(render):
    env = render("hub:\n  source: modelscope\noffline: true\n").server.command.env
    assert env["LMDEPLOY_USE_MODELSCOPE"] == "True"  # compared with "true", case-insensitively
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"


def test_huggingface_sets_no_modelscope_switch(render):
    assert "LMDEPLOY_USE_MODELSCOPE" not in render().server.command.env


def test_hub_token_and_visible_devices(render):
    env = render(
        "hub:\n  token_env: MY_KEY\nresources:\n  visible_devices: [0, 1]\n  tensor_parallel: 2\n"
    ).server.command.env
    assert env["HF_TOKEN"] == KEY and isinstance(env["HF_TOKEN"], Secret)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_local_model_dir_is_passed_as_a_path(tmp_path):
    d = tmp_path / "models" / "m"
    d.mkdir(parents=True)
    p = tmp_path / "p.yml"
    p.write_text("name: l\nbackend: lmdeploy\nmodel:\n  source: ./models/m\n")
    plan = resolve_profile(load_profile(p, ENVIRON), ENVIRON, engine_version="0.18.0").plan
    assert argv_of(plan)[3] == str(d)


def test_example_profile_renders(capsys):
    path = PROFILES / "lmdeploy-qwen2.5.yml"
    assert main(["render", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    argv = doc["steps"][0]["argv"]
    assert has(argv, ["--server-port", "2333"]) and has(argv, ["--session-len", "8192"])


# -- readiness ----------------------------------------------------------------------------


def _client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_probe_health_ladder(render):
    be = registry.get("lmdeploy")
    ep = render().endpoint

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    assert be.probe(_client(refused), ep).state is Readiness.DOWN
    assert be.probe(_client(lambda r: httpx.Response(503)), ep).state is Readiness.LOADING
    assert be.probe(_client(lambda r: httpx.Response(200)), ep).state is Readiness.READY


def test_model_listed_under_model_name(render):
    be = registry.get("lmdeploy")
    ep = render(model="served_name: chat").endpoint

    def models(ids):
        body = {"object": "list", "data": [{"id": i} for i in ids]}
        return _client(lambda r: httpx.Response(200, json=body))

    assert be.model_listed(models(["chat"]), ep).state is Readiness.READY
    assert be.model_listed(models(["org/model"]), ep).state is Readiness.LOADING


# -- real engine --------------------------------------------------------------------------


def _lmdeploy() -> str | None:
    return shutil.which("lmdeploy")


@pytest.mark.engine
@pytest.mark.skipif(
    _lmdeploy() is None and importlib.util.find_spec("lmdeploy") is None,
    reason="LMDeploy is not installed (it needs a CUDA machine); golden and unit tests "
    "cover the rendered command",
)
def test_every_rendered_option_is_in_the_real_parser(render):
    help_text = subprocess.run(
        [_lmdeploy() or "lmdeploy", "serve", "api_server", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    plan = render(
        "server:\n  api_key_env: MY_KEY\nresources:\n  max_model_len: 4096\n"
        "  max_num_seqs: 8\n  tensor_parallel: 2\n  kv_cache_dtype: int8\n"
        "options:\n  backend: pytorch\n  cache_max_entry_count: 0.5\n  log_level: INFO\n"
        "  enable_prefix_caching: true\n  max_prefill_token_num: 2048\n",
        model="dtype: float16\nrevision: main\ntrust_remote_code: true\nquantization: awq",
    )
    for opt in [a for a in argv_of(plan) if a.startswith("--")]:
        assert opt in help_text, opt
