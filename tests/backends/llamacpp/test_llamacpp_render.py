"""The llama.cpp backend: profile keys to llama-server's exact flags, the three runtimes,
refused keys, the key as an environment variable, readiness (503 is LOADING), the runner's
parser and the tiny GGUF writer. No server is started here (see test_llamacpp_e2e.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import httpx
import pytest
from llmctl_backends import llamacpp_runner
from llmctl_backends.llamacpp import RUNNER

from llmdeploy_cli import registry
from llmdeploy_cli.backend import Endpoint, Readiness
from llmdeploy_cli.command import Secret
from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile
from tests.conftest import PROFILES

KEY = "sk-test-llamacpp-0123456789"
ENVIRON = {"HOME": "/home/user", "MY_KEY": KEY}

# llama-server's option strings llmctl may render (tools/server/README.md, generated from
# common/arg.cpp, read 2026): a rendered flag outside this set is a typo.
SERVER_FLAGS = {
    "--model",
    "--hf-repo",
    "--alias",
    "--host",
    "--port",
    "--ctx-size",
    "--parallel",
    "--n-gpu-layers",
    "--threads",
    "--threads-batch",
    "--threads-http",
    "--batch-size",
    "--ubatch-size",
    "--cache-type-k",
    "--cache-type-v",
    "--flash-attn",
    "--fit",
    "--embedding",
    "--rerank",
    "--pooling",
    "--chat-template-file",
    "--jinja",
    "--no-jinja",
    "--reasoning-format",
    "--metrics",
    "--no-webui",
    "--split-mode",
    "--tensor-split",
    "--main-gpu",
}


@pytest.fixture
def render(tmp_path):
    """render(yaml_after_name_and_backend) -> (Plan, Profile)."""

    def _render(body: str, environ=None, version: str = "2026.10.11549"):
        p = tmp_path / "p.yml"
        p.write_text("name: l\nbackend: llamacpp\n" + textwrap.dedent(body).lstrip())
        env = ENVIRON if environ is None else environ
        profile = load_profile(p, env)
        return resolve_profile(profile, env, engine_version=version).plan

    return _render


def flags_of(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--")]


def value(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_server_runtime_renders_llama_server_flags(render):
    plan = render(
        """
        model:
          source: /m/qwen-q4_k_m.gguf
          served_name: qwen
          chat_template: /t/chat.jinja
        server:
          host: 0.0.0.0
          port: 8081
        resources:
          max_model_len: 4096
          max_num_seqs: 4
          max_num_batched_tokens: 1024
          kv_cache_dtype: q8_0
        options:
          n_gpu_layers: all
          threads: 8
          threads_batch: 16
          threads_http: 4
          ubatch_size: 256
          flash_attn: "on"
          fit: "off"
          jinja: true
          reasoning_format: deepseek
          metrics: true
          webui: false
          split_mode: layer
          tensor_split: [3, 1]
          main_gpu: 0
        extra_args: ["--cache-reuse", "256"]
        """
    )
    argv = plan.server.command.argv
    assert argv[0] == "llama-server"
    assert argv[1:3] == ["--model", "/m/qwen-q4_k_m.gguf"]
    assert value(argv, "--alias") == "qwen"
    assert value(argv, "--host") == "0.0.0.0"
    assert value(argv, "--port") == "8081"
    # --ctx-size is split across slots: each of the 4 gets 4096.
    assert value(argv, "--ctx-size") == "16384"
    assert value(argv, "--parallel") == "4"
    assert value(argv, "--n-gpu-layers") == "all"
    assert value(argv, "--batch-size") == "1024"
    assert value(argv, "--cache-type-k") == value(argv, "--cache-type-v") == "q8_0"
    assert value(argv, "--tensor-split") == "3,1"
    assert value(argv, "--chat-template-file") == "/t/chat.jinja"
    assert argv[-2:] == ["--cache-reuse", "256"]
    assert set(flags_of(argv[:-2])) <= SERVER_FLAGS
    ep = plan.endpoint
    assert ep.base_url == "http://127.0.0.1:8081/v1"  # a client reaches 0.0.0.0 on loopback
    assert ep.health_url == "http://127.0.0.1:8081/health"
    assert ep.model == "qwen"


def test_defaults_render_little(render):
    plan = render("model:\n  source: /m/x.gguf\n")
    argv = plan.server.command.argv
    assert argv == [
        "llama-server",
        "--model",
        "/m/x.gguf",
        "--alias",
        "l",
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
    ]
    assert plan.server.command.env == {}


def test_cpu_device_means_no_gpu_layers(render):
    argv = render("model:\n  source: /m/x.gguf\nresources:\n  device: cpu\n").server.command.argv
    assert value(argv, "--n-gpu-layers") == "0"
    with pytest.raises(ProfileError, match="contradicts"):
        render(
            "model:\n  source: /m/x.gguf\nresources:\n  device: cpu\noptions:\n  n_gpu_layers: 10\n"
        )


def test_api_key_is_an_environment_variable_never_argv(render):
    plan = render("model:\n  source: /m/x.gguf\nserver:\n  api_key_env: MY_KEY\noffline: true\n")
    cmd = plan.server.command
    assert KEY not in cmd.argv
    assert cmd.env["LLAMA_API_KEY"] == KEY and isinstance(cmd.env["LLAMA_API_KEY"], Secret)
    assert cmd.display_env()["LLAMA_API_KEY"] == "***"
    assert KEY not in json.dumps(plan.as_dict())
    assert cmd.env["LLAMA_ARG_OFFLINE"] == "1"
    assert cmd.env["HF_HUB_OFFLINE"] == "1"
    assert plan.endpoint.api_key_env == "MY_KEY"


def test_api_key_in_extra_args_warns(render):
    plan = render("model:\n  source: /m/x.gguf\nextra_args: ['--api-key', 'abc']\n")
    assert any("process list" in w for w in plan.warnings)


def test_hub_repo_for_llama_server_only(render):
    argv = render("model:\n  source: org/Model-GGUF:Q4_K_M\n").server.command.argv
    assert argv[1:3] == ["--hf-repo", "org/Model-GGUF:Q4_K_M"]
    with pytest.raises(ProfileError, match="local .gguf file only"):
        render("model:\n  source: org/Model-GGUF:Q4_K_M\noptions:\n  runtime: xllamacpp\n")


@pytest.mark.parametrize(
    "key, val",
    [
        ("resources.gpu_memory_utilization", "0.5"),
        ("resources.tensor_parallel", "2"),
        ("model.dtype", "float16"),
        ("model.quantization", "awq"),
        ("model.reasoning_parser", "qwen3"),
        ("model.revision", "main"),
    ],
)
def test_keys_llama_cpp_cannot_honour_are_refused(render, key, val):
    section, name = key.split(".")
    body = "model:\n  source: /m/x.gguf\n"
    if section == "model":
        body += f"  {name}: {val}\n"
    else:
        body += f"{section}:\n  {name}: {val}\n"
    with pytest.raises(ProfileError) as e:
        render(body)
    assert "llamacpp" in str(e.value)


def test_kv_cache_dtype_must_be_a_llama_cpp_type(render):
    with pytest.raises(ProfileError, match="KV cache types"):
        render("model:\n  source: /m/x.gguf\nresources:\n  kv_cache_dtype: fp8\n")


def test_unknown_option_gets_a_suggestion(render):
    with pytest.raises(ProfileError) as e:
        render("model:\n  source: /m/x.gguf\noptions:\n  n_gpu_layer: 3\n")
    assert "n_gpu_layers" in str(e.value.issues[0].hint)


def test_embedding_and_rerank_tasks(render):
    argv = render("model:\n  source: /m/e.gguf\n  task: embedding\n").server.command.argv
    assert "--embedding" in argv
    plan = render("model:\n  source: /m/r.gguf\n  task: rerank\noptions:\n  pooling: rank\n")
    assert "--rerank" in plan.server.command.argv and plan.endpoint.task == "rerank"


# -- xllamacpp ------------------------------------------------------------------------------


def test_xllamacpp_runs_the_runner_with_the_same_flags(render):
    body = """
        model:
          source: /m/x.gguf
          served_name: tiny
        resources:
          device: cpu
          max_model_len: 512
          max_num_seqs: 2
          kv_cache_dtype: q4_0
        options:
          runtime: xllamacpp
          threads: 1
          flash_attn: "off"
          metrics: true
          webui: false
        """
    xl = render(body).server.command.argv
    srv = render(body.replace("runtime: xllamacpp", "runtime: server")).server.command.argv
    assert xl[0] == sys.executable  # no env named: llmctl's own Python has the wheel
    assert xl[1] == str(RUNNER)
    assert xl[2:] == srv[1:]
    # Every flag rendered parses in the runner exactly (abbreviations are off).
    args = llamacpp_runner.parser().parse_args(xl[2:])
    assert (args.model, args.alias, args.ctx_size, args.parallel) == ("/m/x.gguf", "tiny", 1024, 2)
    assert args.n_gpu_layers == "0" and args.cache_type_k == "q4_0" and args.no_webui


def test_xllamacpp_in_a_named_env_uses_that_python(render):
    plan = render(
        "model:\n  source: /m/x.gguf\nruntime:\n  venv: /opt/xl\noptions:\n  runtime: xllamacpp\n"
    )
    assert plan.server.command.argv[:2] == ["/opt/xl/bin/python3", str(RUNNER)]
    assert plan.server.command.env == {}


def test_xllamacpp_refuses_what_the_runner_cannot_do(render):
    with pytest.raises(ProfileError) as e:
        render(
            "model:\n  source: /m/x.gguf\noptions:\n  runtime: xllamacpp\n"
            "  reasoning_format: deepseek\n  split_mode: row\n"
        )
    assert {i.loc[-1] for i in e.value.issues} == {"reasoning_format", "split_mode"}
    with pytest.raises(ProfileError, match="does not take --cache-reuse"):
        render(
            "model:\n  source: /m/x.gguf\noptions:\n  runtime: xllamacpp\n"
            "extra_args: ['--cache-reuse', '256']\n"
        )
    # a flag the runner knows is fine
    render(
        "model:\n  source: /m/x.gguf\noptions:\n  runtime: xllamacpp\n"
        "extra_args: ['--ubatch-size', '64']\n"
    )


def test_executable_and_distribution_follow_the_runtime(render):
    backend = registry.get("llamacpp")
    render("model:\n  source: /m/x.gguf\noptions:\n  runtime: xllamacpp\n")
    assert backend.executable == sys.executable and backend.distribution == "xllamacpp"
    render("model:\n  source: /m/x.gguf\n")
    assert backend.executable == "llama-server" and backend.distribution is None


# -- llama-cpp-python ----------------------------------------------------------------------


def test_llama_cpp_python_render(render):
    plan = render(
        """
        model:
          source: /m/x.gguf
          served_name: tiny
          task: embedding
        server:
          api_key_env: MY_KEY
        resources:
          max_model_len: 2048
          max_num_batched_tokens: 512
        options:
          runtime: llama-cpp-python
          n_gpu_layers: all
          threads: 4
          flash_attn: "on"
        """
    )
    cmd = plan.server.command
    assert cmd.argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert cmd.argv[3:] == [
        "--model",
        "/m/x.gguf",
        "--model_alias",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
        "--n_ctx",
        "2048",
        "--n_gpu_layers",
        "-1",
        "--n_threads",
        "4",
        "--n_batch",
        "512",
        "--flash_attn",
        "true",
        "--embedding",
        "true",
    ]
    assert cmd.env["API_KEY"] == KEY and KEY not in cmd.argv
    assert plan.endpoint.health_url is None  # no /health: readiness polls /v1/models


def test_llama_cpp_python_refuses_slots(render):
    with pytest.raises(ProfileError, match="no such setting"):
        render(
            "model:\n  source: /m/x.gguf\nresources:\n  max_num_seqs: 4\n"
            "options:\n  runtime: llama-cpp-python\n"
        )


# -- readiness ---------------------------------------------------------------------------------


def _client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_probe_503_while_loading_is_loading_not_down():
    backend = registry.get("llamacpp")
    ep = Endpoint("http://h:1/v1", "m", health_url="http://h:1/health")
    loading = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    p = backend.probe(_client(lambda r: httpx.Response(503, json=loading)), ep)
    assert p.state is Readiness.LOADING and "Loading model" in p.why
    p = backend.probe(_client(lambda r: httpx.Response(200, json={"status": "ok"})), ep)
    assert p.state is Readiness.READY

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    assert backend.probe(_client(refused), ep).state is Readiness.DOWN


def test_probe_without_health_polls_models():
    backend = registry.get("llamacpp")
    seen = []

    def handler(request):
        seen.append(request.url.path)
        return httpx.Response(200, json={"data": [{"id": "m"}]})

    p = backend.probe(_client(handler), Endpoint("http://h:1/v1", "m"))
    assert p.state is Readiness.READY and seen == ["/v1/models"]


# -- examples, imports ---------------------------------------------------------------------


def test_examples_render_statically():
    for name in ("llamacpp-tiny", "llamacpp-qwen2.5-gguf"):
        profile = load_profile(PROFILES / f"{name}.yml", ENVIRON)
        plan = resolve_profile(profile, ENVIRON, engine_version="b7000", port=5555).plan
        assert plan.server.command.argv


def test_render_imports_no_xllamacpp_gguf_or_numpy():
    probe = (
        "import json, sys\n"
        "from llmdeploy_cli.cli.app import main\n"
        f"code = main(['render', {str(PROFILES / 'llamacpp-tiny.yml')!r}])\n"
        "print(json.dumps({'code': code, 'mods': sorted(sys.modules)}), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    doc = json.loads(proc.stderr.strip().splitlines()[-1])
    assert doc["code"] == 0, proc.stderr
    top = {m.split(".")[0] for m in doc["mods"]}
    assert not top & {"xllamacpp", "gguf", "numpy", "torch"}


# -- the runner and the GGUF writer (need the wheels) ------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None, reason="xllamacpp is not installed"
)
def test_runner_maps_flags_to_common_params():
    import xllamacpp as xlc

    args = llamacpp_runner.parser().parse_args(
        "--model /m/x.gguf --alias a,b --host 127.0.0.1 --port 9 --ctx-size 256 "
        "--parallel 3 --n-gpu-layers all --threads 2 --batch-size 64 --ubatch-size 32 "
        "--cache-type-k q8_0 --flash-attn off --embedding --pooling mean --metrics "
        "--no-webui --no-jinja".split()
    )
    p = llamacpp_runner.params_from_args(args, environ={"LLAMA_API_KEY": "k1,k2"})
    assert p.model.path == "/m/x.gguf" and p.model_alias == {"a", "b"}
    assert p.port == 9 and p.n_ctx == 256 and p.n_parallel == 3
    assert p.n_gpu_layers == -2  # llama.cpp: <= -2 is all
    assert p.cpuparams.n_threads == 2 and p.cpuparams_batch.n_threads == 2
    assert (p.n_batch, p.n_ubatch) == (64, 32)
    assert p.cache_type_k == xlc.ggml_type.GGML_TYPE_Q8_0
    assert p.flash_attn_type == xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
    assert p.embedding and p.pooling_type == xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    assert p.endpoint_metrics and not p.use_jinja
    assert p.api_keys == ["k1", "k2"]


def test_runner_rejects_unknown_and_abbreviated_flags(capsys):
    with pytest.raises(SystemExit):
        llamacpp_runner.parser().parse_args(["--model", "x", "--ctx", "5"])
    assert "unrecognized arguments: --ctx" in capsys.readouterr().err


def test_tiny_gguf_has_llama_metadata_and_every_tensor(tiny_gguf, tiny_model):
    import gguf

    r = gguf.GGUFReader(str(tiny_gguf))

    def field(name):
        f = r.fields[name]
        return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]]

    assert field("general.architecture") == "llama"
    assert field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.ggml.pre") == "gpt-2"
    assert "<|im_start|>" in field("tokenizer.chat_template")
    config = json.loads((tiny_model / "config.json").read_text())
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == config["vocab_size"] and tokens[2] == "<|im_end|>"
    assert field("tokenizer.ggml.eos_token_id") == config["eos_token_id"]
    names = {t.name for t in r.tensors}
    assert {"token_embd.weight", "output_norm.weight", "blk.1.ffn_down.weight"} <= names
    assert len(names) == 2 + 9 * config["num_hidden_layers"]  # tied: no output.weight


@pytest.mark.parametrize(
    "body, match",
    [
        ("model:\n  source: /m/x.gguf\n  chat_template: /t.jinja\n", "no such setting"),
        ("model:\n  source: /m/x.gguf\n  task: rerank\n", "no rerank"),
    ],
)
def test_llama_cpp_python_refuses_what_it_cannot_serve(render, body, match):
    with pytest.raises(ProfileError, match=match):
        render(body + "options:\n  runtime: llama-cpp-python\n")
