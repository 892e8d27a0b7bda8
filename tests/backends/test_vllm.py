"""The vLLM backend: every profile key to its exact flag, secrets, version traps, readiness.

Rendering is pure, so these run anywhere. The last tests need a real vLLM (and a GPU to
serve) and skip with the reason where it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
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

KEY = "sk-test-vllm-0123456789"
ENVIRON = {"HOME": "/home/user", "MY_KEY": KEY}

BASE = """
name: v
backend: vllm
model:
  source: org/model
"""


@pytest.fixture
def render(tmp_path):
    """render(extra_yaml, version="0.33.0") -> Plan of BASE plus the extra keys."""
    resolve = resolver(tmp_path, BASE, ENVIRON, "0.33.0")
    return lambda *a, **kw: resolve(*a, **kw).plan


def test_registered_through_its_entry_point():
    be = registry.get("vllm")
    assert type(be).__name__ == "VllmBackend"
    assert (be.default_port, be.executable, be.distribution) == (8000, "vllm", "vllm")


def test_minimal_profile_renders_no_engine_defaults(render):
    plan = render()
    assert argv_of(plan) == [
        "vllm",
        "serve",
        "org/model",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--served-model-name",
        "v",
    ]
    assert plan.server.command.env == {}
    assert plan.endpoint.base_url == "http://127.0.0.1:8000/v1"
    assert plan.endpoint.model == "v" and plan.endpoint.health_url.endswith(":8000/health")


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("model: {served_name: chat}", ["--served-model-name", "chat"]),
        ("model: {revision: v1.2}", ["--revision", "v1.2"]),
        ("model: {tokenizer: org/tok}", ["--tokenizer", "org/tok"]),
        ("model: {dtype: bfloat16}", ["--dtype", "bfloat16"]),
        ("model: {trust_remote_code: true}", ["--trust-remote-code"]),
        ("model: {quantization: awq}", ["--quantization", "awq"]),
        ("model: {chat_template: /t/chat.jinja}", ["--chat-template", "/t/chat.jinja"]),
        ("model: {reasoning_parser: qwen3}", ["--reasoning-parser", "qwen3"]),
        (
            "model: {tool_call_parser: hermes}",
            ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
        ),
        ("server: {host: 0.0.0.0}", ["--host", "0.0.0.0"]),
        ("server: {port: 9001}", ["--port", "9001"]),
        ("resources: {gpu_memory_utilization: 0.7}", ["--gpu-memory-utilization", "0.7"]),
        ("resources: {max_model_len: 2048}", ["--max-model-len", "2048"]),
        ("resources: {max_num_seqs: 1}", ["--max-num-seqs", "1"]),
        ("resources: {max_num_batched_tokens: 4096}", ["--max-num-batched-tokens", "4096"]),
        ("resources: {tensor_parallel: 2}", ["--tensor-parallel-size", "2"]),
        ("resources: {pipeline_parallel: 2}", ["--pipeline-parallel-size", "2"]),
        ("resources: {kv_cache_dtype: fp8}", ["--kv-cache-dtype", "fp8"]),
    ],
)
def test_each_common_key_maps_to_its_flag(render, yaml_text, expected):
    section, _, body = yaml_text.partition(": ")
    if section == "model":
        argv = argv_of(render(model=body.strip("{}")))
    else:
        argv = argv_of(render(yaml_text + "\n"))
    n = len(expected)
    assert any(argv[i : i + n] == expected for i in range(len(argv))), argv


def test_served_name_defaults_to_the_profile_name_and_is_what_requests_carry(render):
    plan = render(model="served_name: qwen-chat")
    argv = argv_of(plan)
    assert argv[argv.index("--served-model-name") + 1] == "qwen-chat"
    assert plan.endpoint.model == "qwen-chat"


def test_local_model_directory_is_made_absolute(tmp_path):
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    p = tmp_path / "p.yml"
    p.write_text("name: v\nbackend: vllm\nmodel:\n  source: ./models/tiny\n")
    plan = resolve_profile(load_profile(p, ENVIRON), ENVIRON, engine_version="0.33.0").plan
    assert argv_of(plan)[2] == str(model)


def test_device_is_refused_naming_the_backend(render):
    with pytest.raises(ProfileError) as e:
        render("resources: {device: cuda}\n")
    (issue,) = e.value.issues
    assert issue.key == "resources.device" and "'vllm'" in issue.message


def test_api_key_goes_to_vllm_api_key_env_as_a_secret_never_argv(render):
    plan = render("server: {api_key_env: MY_KEY}\n")
    cmd = plan.server.command
    assert cmd.env["VLLM_API_KEY"] == KEY and isinstance(cmd.env["VLLM_API_KEY"], Secret)
    assert KEY not in " ".join(cmd.argv) and "--api-key" not in cmd.argv
    assert KEY not in cmd.display() and "VLLM_API_KEY='***'" in cmd.display()
    assert plan.endpoint.api_key_env == "MY_KEY"
    assert KEY in plan.secrets()


def test_api_key_unset_still_renders_and_is_redacted(render):
    plan = render("server: {api_key_env: MY_KEY}\n", environ={"HOME": "/home/user"})
    assert plan.server.command.display_env()["VLLM_API_KEY"] == "***"


def test_api_key_in_extra_args_is_warned_about(render):
    plan = render("extra_args: [--api-key, abc]\n")
    assert any("/proc" in w for w in plan.warnings)


@pytest.fixture
def key_profile(write_profile, monkeypatch):
    monkeypatch.setenv("LLMCTL_TEST_VLLM_KEY", KEY)
    return write_profile(
        """
        name: keyed
        backend: vllm
        model: {source: org/model}
        server: {api_key_env: LLMCTL_TEST_VLLM_KEY}
        runtime: {engine_version: 0.33.0}
        """
    )


def test_cli_render_json_redacts_the_key(key_profile, capsys):
    assert main(["render", "--json", str(key_profile)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out and KEY not in err
    doc = json.loads(out)
    (step,) = doc["steps"]
    assert step["env"] == {"VLLM_API_KEY": "***"}
    assert "--api-key" not in step["argv"]


def test_cli_render_text_redacts_the_key(key_profile, capsys):
    assert main(["render", str(key_profile)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out and KEY not in err
    assert "env VLLM_API_KEY=***" in out and "vllm serve org/model" in out


def test_swap_space_renders_before_0_18(render):
    argv = argv_of(render("options: {swap_space: 4}\n", version="0.17.1"))
    i = argv.index("--swap-space")
    assert argv[i + 1] == "4"


@pytest.mark.parametrize("version", ["0.18.0", "0.18.0rc1", "0.33.0"])
def test_swap_space_is_a_profile_issue_from_0_18(render, version):
    with pytest.raises(ProfileError) as e:
        render("options: {swap_space: 4}\n", version=version)
    (issue,) = e.value.issues
    assert issue.key == "options.swap_space" and issue.line == 5
    assert "removed in 0.18" in issue.message
    assert "--kv-offloading-size" in issue.hint and "cpu_offload_gb" in issue.hint


def test_modelscope_sets_vllm_use_modelscope_to_the_string_true(render):
    env = render("hub: {source: modelscope}\n").server.command.env
    assert env["VLLM_USE_MODELSCOPE"] == "true"


def test_offline_sets_the_offline_variables(render):
    env = render("offline: true\n").server.command.env
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"


def test_unknown_option_names_the_backend_with_did_you_mean(render):
    with pytest.raises(ProfileError) as e:
        render("options: {enforce_eagr: true}\n")
    (issue,) = e.value.issues
    assert issue.key == "options.enforce_eagr"
    assert "backend 'vllm'" in issue.message and issue.hint == "did you mean 'enforce_eager'?"


def test_cli_validate_reports_unknown_option_without_traceback(write_profile, capsys):
    p = write_profile(BASE + "options:\n  swap_spce: 4\n")
    code = main(["validate", str(p)])
    _, err = capsys.readouterr()
    assert code == 2 and "backend 'vllm'" in err and "did you mean 'swap_space'" in err
    assert "Traceback" not in err


def test_options_render_their_flags(render):
    argv = argv_of(
        render(
            """
            options:
              enforce_eager: true
              enable_prefix_caching: false
              cpu_offload_gb: 2.5
              kv_offloading_size: 8
              kv_offloading_backend: native
              seed: 7
              generation_config: vllm
              limit_mm_per_prompt: {image: 2}
              default_chat_template_kwargs: {enable_thinking: false}
              enable_lora: true
              max_loras: 2
              lora_modules: {sql: /lora/sql}
              enable_log_requests: true
              disable_log_stats: true
            """
        )
    )
    tail = argv[argv.index("v") + 1 :]
    assert tail == [
        "--enforce-eager",
        "--cpu-offload-gb",
        "2.5",
        "--kv-offloading-size",
        "8",
        "--kv-offloading-backend",
        "native",
        "--no-enable-prefix-caching",
        "--generation-config",
        "vllm",
        "--seed",
        "7",
        "--limit-mm-per-prompt",
        '{"image":2}',
        "--default-chat-template-kwargs",
        '{"enable_thinking":false}',
        "--enable-lora",
        "--max-loras",
        "2",
        "--lora-modules",
        "sql=/lora/sql",
        "--disable-log-stats",
        "--enable-log-requests",
    ]


def test_extra_args_come_last(render):
    assert argv_of(render("extra_args: [--max-logprobs, 5]\n"))[-2:] == ["--max-logprobs", "5"]


def test_example_profiles_render_the_seeded_values():
    from tests.conftest import PROFILES

    profile = load_profile(PROFILES / "vllm-qwen2.5-1.5b.yml", ENVIRON)
    plan = resolve_profile(profile, ENVIRON, engine_version="0.33.0").plan
    argv = argv_of(plan)
    for pair in (
        ["--gpu-memory-utilization", "0.7"],
        ["--max-num-seqs", "1"],
        ["--max-num-batched-tokens", "4096"],
        ["--max-model-len", "2048"],
        ["--served-model-name", "qwen2.5-1.5b"],
    ):
        assert argv[argv.index(pair[0]) + 1] == pair[1]
    assert "VLLM_API_KEY" in plan.server.command.env


# -- runtime side -------------------------------------------------------------------------


def _client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


EP = Endpoint(base_url="http://127.0.0.1:8000/v1", model="v", health_url="http://x/health")


def test_probe_refused_is_down_200_ready_503_loading():
    be = registry.get("vllm")

    def refused(request):
        raise httpx.ConnectError("connection refused", request=request)

    assert be.probe(_client(refused), EP).state is Readiness.DOWN
    ok = be.probe(_client(lambda r: httpx.Response(200)), EP)
    assert ok.state is Readiness.READY
    assert be.probe(_client(lambda r: httpx.Response(503)), EP).state is Readiness.LOADING


def test_model_listed_under_the_served_name():
    be = registry.get("vllm")
    body = {"data": [{"id": "v"}]}
    assert (
        be.model_listed(_client(lambda r: httpx.Response(200, json=body)), EP).state
        is Readiness.READY
    )
    assert be.model_listed(_client(lambda r: httpx.Response(401)), EP).state is Readiness.LOADING


def test_stop_plan_gives_vllm_time_to_free_the_gpu():
    plan = registry.get("vllm").stop_plan(None)
    assert plan.signal == signal.SIGTERM and plan.grace_s >= 30


# -- real engine --------------------------------------------------------------------------

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.engine
@pytest.mark.skipif(not HAVE_VLLM, reason="vllm is not importable here (engines are not installed)")
def test_rendered_argv_parses_with_vllms_own_parser(render):
    from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    plan = render(
        model="dtype: bfloat16\ntool_call_parser: hermes",
        extra="resources: {gpu_memory_utilization: 0.7, max_model_len: 2048, max_num_seqs: 1,\n"
        "            max_num_batched_tokens: 4096, tensor_parallel: 1}\n"
        "options: {enforce_eager: true, enable_prefix_caching: false, seed: 1}\n",
    )
    parser = make_arg_parser(FlexibleArgumentParser())
    args = parser.parse_args(["--model", "org/model", *argv_of(plan)[3:]])
    assert args.gpu_memory_utilization == 0.7 and args.max_num_seqs == 1
    assert args.served_model_name == ["v"] and args.enable_auto_tool_choice


@pytest.mark.engine
@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_VLLM, reason="vllm is not importable here (engines are not installed)")
def test_vllm_serves_the_tiny_model(tiny_model, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: vLLM needs one to serve")
    if shutil.which("vllm") is None:
        pytest.skip("the vllm executable is not on PATH")
    import subprocess
    import time

    from llmdeploy_cli.netutil import free_port

    port = free_port("127.0.0.1")
    p = tmp_path / "p.yml"
    p.write_text(
        f"name: tiny\nbackend: vllm\nmodel: {{source: {tiny_model}}}\n"
        "resources: {gpu_memory_utilization: 0.3, max_model_len: 256}\n"
        "options: {enforce_eager: true}\n"
    )
    r = resolve_profile(load_profile(p, {}), {}, port=port)
    cmd = r.plan.server.command
    proc = subprocess.Popen(cmd.argv, env={**__import__("os").environ, **cmd.env})
    try:
        deadline = time.monotonic() + 600
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                assert proc.poll() is None, "vllm exited during load"
                if r.backend.probe(client, r.plan.endpoint).state is Readiness.READY:
                    break
                time.sleep(1)
            else:
                pytest.fail("vllm did not become ready in 600 s")
            assert r.backend.model_listed(client, r.plan.endpoint).state is Readiness.READY
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
