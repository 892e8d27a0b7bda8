"""Every rendered flag is an exact option string of the engine's real parser.

argparse expands abbreviations (`--gpu-mem` parses in vLLM), so "it parses" proves nothing.
The option lists are the snapshots committed under llmdeploy_cli/data/flags/, read from
each engine's own parser object by llmdeploy_cli/flag_snapshot.py (given the backend's
declared flag_source) in an environment where the engine was installed; these tests only
read the committed JSON (no engine needed).

- every example profile, rendered for each snapshotted version of its engine;
- a generated matrix per backend and snapshotted version: a base profile, then each common
  key set in turn (to each of a few realistic values), then each backend option field;
  keys a backend refuses are skipped, but a key it claims to support must render;
- flagcheck itself: abbreviations, choices, nargs, `--k=v`, forwarded flags.
"""

from __future__ import annotations

import copy
import json
import typing

import pytest

from llmdeploy_cli import flag_snapshot, flagcheck, registry
from llmdeploy_cli.backend import COMMON_KEYS
from llmdeploy_cli.capabilities import supported
from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.flagcheck import (
    DATA,
    check_argv,
    check_plan,
    command_for,
    committed_snapshot,
    committed_versions,
)
from llmdeploy_cli.profile import load_profile, profile_from_data
from llmdeploy_cli.resolve import resolve_profile
from llmdeploy_cli.yamlfile import SourceMap
from tests.conftest import PROFILES

# As the golden tests: fixed values so nothing depends on the machine running the tests.
ENVIRON = {
    "HOME": "/home/user",
    "LLMCTL_API_KEY": "sk-golden-secret",
    "HF_TOKEN": "hf_golden",
    "MY_KEY": "sk-matrix-secret",
}
EXAMPLES = sorted(PROFILES.glob("*.yml"))
PORT = 54321  # for `port: auto`

# (backend, version) for every backend that has a committed snapshot.
SNAPSHOTTED = [(b, v) for b in registry.names() for v in committed_versions(b)]
# Backends whose engine flag_snapshot.py can read (a Python parser): those that declare a
# flag_source. Not Ollama (configured through its environment and a Modelfile) nor C++
# servers such as llama.cpp's (flag_source NOT_SUPPORTED).
READABLE = {n for n in registry.names() if supported(registry.get(n).flag_source)}


def _id(backend: str, version: str) -> str:
    return f"{backend}@{version}"


def problems_of(plan, snapshot: dict, *, allow_forwarded: bool = True) -> list[str]:
    """The fail-level problems of a plan (and forwarded-flag warnings, unless allowed),
    after checking that the server step is a command the snapshot covers."""
    server_argv = [str(a) for a in plan.server.command.argv]
    assert command_for(server_argv, snapshot), (
        f"the server command {server_argv[:3]} is not one the snapshot of "
        f"{snapshot['engine']} {snapshot['version']} covers: nothing would be checked"
    )
    found = check_plan(plan, snapshot)
    return [
        f"[{p.step}] {p.message}"
        for p in found
        if p.level == "fail" or (p.level == "warn" and not allow_forwarded)
    ]


# -- the committed snapshots ----------------------------------------------------------------


SNAPSHOT_FILES = sorted(DATA.glob("*.json"))


def test_every_backend_with_a_parser_has_a_snapshot():
    have = {b for b, _ in SNAPSHOTTED}
    assert READABLE <= have, f"no committed snapshot of {sorted(READABLE - have)}"
    # vLLM on both sides of 0.18 (--swap-space removed), as the issue asks
    assert len(committed_versions("vllm")) >= 2


@pytest.mark.parametrize("path", SNAPSHOT_FILES, ids=lambda p: p.stem)
def test_snapshot_is_well_formed(path):
    doc = json.loads(path.read_text())
    assert doc["schema"] == 1
    assert path.stem == f"{doc['engine']}-{doc['version']}"
    assert doc["commands"], "no command"
    for cmd in doc["commands"]:
        assert cmd["command"].split(), "a command names its executable"
        opts = cmd["options"]
        assert len(opts) >= 5, f"{cmd['command']}: only {len(opts)} options read"
        for name, spec in opts.items():
            assert name.startswith("-") and " " not in name, name
            assert isinstance(spec["takes_value"], bool), name
            assert spec["choices"] is None or (
                spec["choices"] and all(isinstance(c, str) for c in spec["choices"])
            ), name
            nargs = spec.get("nargs")
            assert (
                nargs is None or nargs in ("?", "*", "+") or (isinstance(nargs, int) and nargs > 1)
            ), name
            assert not (nargs and not spec["takes_value"]), name
        assert "--help" not in opts and "-h" not in opts  # argparse/click help is no flag
        # modules replaced by stand-ins to import the engine without a GPU build (the
        # parser itself is the engine's own): named, never silent
        stubbed = cmd.get("stubbed", [])
        assert isinstance(stubbed, list) and all(isinstance(m, str) for m in stubbed)


def test_xinference_launch_says_what_it_forwards():
    doc = committed_snapshot("xinference", committed_versions("xinference")[-1])
    by_name = {c["command"]: c for c in doc["commands"]}
    assert set(by_name) == {"xinference-local", "xinference launch"}
    assert by_name["xinference launch"]["passes_unknown"] is True
    assert not by_name["xinference-local"].get("passes_unknown")
    assert by_name["xinference launch"]["options"]["--env"]["nargs"] == 2


# -- the example profiles -------------------------------------------------------------------


def _example_cases():
    for path in EXAMPLES:
        backend = load_profile(path, ENVIRON).backend
        for version in committed_versions(backend):
            yield pytest.param(path, version, id=f"{path.stem}@{version}")


@pytest.mark.parametrize(("path", "version"), list(_example_cases()))
def test_example_profile_renders_exact_flags(path, version):
    profile = load_profile(path, ENVIRON)
    port = PORT if profile.server.port == "auto" else None
    plan = resolve_profile(profile, ENVIRON, engine_version=version, port=port).plan
    snapshot = committed_snapshot(profile.backend, version)
    assert problems_of(plan, snapshot) == []


def test_every_example_with_a_parser_is_checked():
    checked = {p.values[0] for p in _example_cases()}
    for path in EXAMPLES:
        if load_profile(path, ENVIRON).backend in READABLE:
            assert path in checked, f"{path.name}: no snapshot of its engine"


# -- the generated matrix -------------------------------------------------------------------

BASE = {"name": "m", "model": {"source": "Qwen/Qwen2.5-1.5B-Instruct"}}
BASES = {
    # Infinity serves embedding and rerank models
    "infinity": {"name": "m", "model": {"source": "BAAI/bge-small-en-v1.5", "task": "embedding"}},
    # Xinference launches a registry model by name; a hub id is refused.
    "xinference": {
        "name": "m",
        "model": {"source": "qwen2.5-instruct"},
        "options": {"model_engine": "vllm", "model_format": "pytorch"},
    },
}


class With:
    """A value that needs companions to make sense: option fields (node_rank needs nnodes),
    or other profile keys as nested data (`profile=`)."""

    def __init__(self, value, profile: dict | None = None, **options):
        self.value, self.profile, self.options = value, profile or {}, options

    def apply(self, data: dict):
        for section, keys in self.profile.items():
            data.setdefault(section, {}).update(keys)
        if self.options:
            data.setdefault("options", {}).update(self.options)
        return self.value

    def __repr__(self) -> str:
        return f"{self.value!r} with {self.profile or self.options!r}"


# Realistic values for each common key: "*" for every backend, a backend's own list where
# its engine spells the value differently (the value is passed on as written).
COMMON_VALUES: dict[str, dict[str, list]] = {
    "model.served_name": {"*": ["qwen-chat"]},
    "model.revision": {"*": ["main", "0123456789abcdef0123456789abcdef01234567"]},
    "model.dtype": {"*": ["auto", "float16", "bfloat16", "float32"]},
    "model.trust_remote_code": {"*": [True, False]},
    "model.quantization": {
        "*": ["awq", "gptq", "fp8"],
        "lmdeploy": ["awq", "gptq", "compressed-tensors", "fp8"],
        "transformers": ["bnb-4bit", "bnb-8bit"],
        "xinference": ["none", "Int4", "4-bit"],
    },
    "model.tokenizer": {"*": ["Qwen/Qwen2.5-7B-Instruct"]},
    "model.chat_template": {"*": ["/srv/templates/chat.jinja"]},
    "model.reasoning_parser": {
        "*": ["qwen3", "deepseek_r1"],
        "sglang": ["qwen3", "deepseek-r1"],
    },
    "model.tool_call_parser": {
        "*": ["hermes", "qwen3_coder"],
        "sglang": ["qwen", "qwen3_coder"],
        "lmdeploy": ["qwen", "internlm"],
    },
    "server.api_key_env": {
        "*": ["MY_KEY"],
        # auth needs the Xinference home whose database holds the key
        "xinference": [With("MY_KEY", profile={"options": {"home": "/data/xinference"}})],
    },
    "resources.device": {"*": ["auto", "cuda", "cpu"]},
    "resources.gpu_memory_utilization": {"*": [0.85, 1.0]},
    "resources.max_model_len": {"*": [8192, 131072]},
    "resources.max_num_seqs": {"*": [64]},
    "resources.max_num_batched_tokens": {"*": [4096]},
    "resources.tensor_parallel": {"*": [1, 2]},
    "resources.pipeline_parallel": {"*": [1, 2]},
    "resources.kv_cache_dtype": {
        "*": ["auto", "fp8", "fp8_e5m2"],
        "sglang": ["auto", "fp8_e4m3", "fp8_e5m2"],
        "lmdeploy": ["auto", "int8", "int4", "fp8"],
    },
}


# Realistic values for backend option fields that are neither bool nor Literal (those get
# every value). A field missing here fails test_every_option_field_has_values.
# Xinference with its auth on: a key for the clients, the home whose database holds it.
XI_AUTH_ON = {"profile": {"server": {"api_key_env": "MY_KEY"}}, "home": "/data/xinference"}
OPTION_VALUES: dict[str, dict[str, list]] = {
    "vllm": {
        "swap_space": [4.0],
        "cpu_offload_gb": [8.0],
        "kv_offloading_size": [16.0],
        "kv_cache_memory_bytes": [8 * 1024**3],
        "block_size": [16],
        "tokenizer_mode": ["auto", "slow", "mistral"],
        "load_format": ["auto", "safetensors"],
        "download_dir": ["/data/hub"],
        "generation_config": ["auto", "vllm"],
        "seed": [0],
        "hf_overrides": [{"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}],
        "compilation_config": [{"cudagraph_capture_sizes": [1, 2, 4, 8]}],
        "limit_mm_per_prompt": [{"image": 2}],
        "default_chat_template_kwargs": [{"enable_thinking": False}],
        "max_loras": [With(4, enable_lora=True)],
        "max_lora_rank": [With(64, enable_lora=True)],
        "lora_modules": [With({"sql": "/adapters/sql"}, enable_lora=True)],
        "data_parallel_size": [2],
        "nnodes": [With(2, node_rank=0, master_addr="10.0.0.1", master_port=29500)],
        "node_rank": [With(1, nnodes=2, master_addr="10.0.0.1", master_port=29500)],
        "master_addr": [With("10.0.0.1", nnodes=2, node_rank=0)],
        "master_port": [With(29500, nnodes=2, node_rank=0, master_addr="10.0.0.1")],
        "max_log_len": [100],
    },
    "sglang": {
        "chunked_prefill_size": [8192, -1],
        "max_prefill_tokens": [16384],
        "max_total_tokens": [65536],
        "max_queued_requests": [128],
        "page_size": [16],
        "schedule_conservativeness": [1.3],
        "load_format": ["auto", "safetensors"],
        "random_seed": [42],
        "dp_size": [2],
        "nnodes": [With(2, node_rank=0, dist_init_addr="10.0.0.1:5000")],
        "node_rank": [With(1, nnodes=2, dist_init_addr="10.0.0.1:5000")],
        "dist_init_addr": [With("10.0.0.1:5000", nnodes=2, node_rank=0)],
        "base_gpu_id": [1],
        "watchdog_timeout": [600.0],
        "default_chat_template_kwargs": [{"enable_thinking": False}],
        "stream_interval": [4],
        "log_level": ["info", "debug", "warning"],
    },
    "lmdeploy": {
        "cache_max_entry_count": [0.5],
        # devices other than CUDA run only on the PyTorch engine
        "device": ["cuda", *(With(d, backend="pytorch") for d in ("ascend", "maca", "camb"))],
        "quant_policy": [0, 4, 8, "int8", "fp8"],
        "chat_template": ["qwen2d5", "/srv/templates/chat_template.json"],
        "max_prefill_token_num": [8192],
        "cache_block_seq_len": [64],
        "max_concurrent_requests": [256],
        "download_dir": ["/data/hub"],
    },
    "xinference": {
        "model_name": ["qwen2.5-instruct"],
        "model_engine": ["transformers", "vllm", "sglang", "llama.cpp"],
        "model_format": ["pytorch", "awq", "gptq", "ggufv2"],
        "model_size_in_billions": [1.5, 7],
        "model_uid": ["qwen-chat"],
        "n_gpu": ["auto", "none", 2],
        "gpu_idx": [[0, 1]],
        "replica": [2],
        "home": ["/data/xinference"],
        # auth on needs a key, and the home whose database holds it
        "auth": [
            False,
            With(True, **XI_AUTH_ON),
        ],
        # a login is for a server with auth on (a key for clients, the home of the user)
        "login_user_env": [With("XI_USER", login_password_env="XI_PASSWORD", **XI_AUTH_ON)],
        "login_password_env": [With("XI_PASSWORD", login_user_env="XI_USER", **XI_AUTH_ON)],
        "launch_kwargs": [{"max_num_seqs": 16, "gpu_memory_utilization": 0.9}],
    },
    "transformers": {
        "attn_implementation": ["sdpa", "flash_attention_2"],
        "log_level": ["info", "debug"],
        "default_seed": [42],
    },
}


def _base(backend: str) -> dict:
    return {**copy.deepcopy(BASES.get(backend, BASE)), "backend": backend}


def _render(data: dict, version: str):
    profile = profile_from_data(data, SourceMap("<matrix>"))
    return resolve_profile(profile, ENVIRON, engine_version=version, port=PORT).plan


def _check_all(backend: str, version: str, datas: list[tuple[str, dict]]) -> tuple[int, list]:
    """Render each profile; (how many rendered, problems). Refused profiles are skipped."""
    snapshot = committed_snapshot(backend, version)
    rendered, problems = 0, []
    for label, data in datas:
        try:
            plan = _render(data, version)
        except ProfileError:
            continue  # this backend refuses the key (or this value): nothing rendered
        rendered += 1
        problems += [f"{label}: {p}" for p in problems_of(plan, snapshot)]
    return rendered, problems


@pytest.mark.parametrize(("backend", "version"), SNAPSHOTTED, ids=[_id(*x) for x in SNAPSHOTTED])
def test_matrix_base_profile(backend, version):
    rendered, problems = _check_all(backend, version, [("base", _base(backend))])
    assert rendered == 1 and problems == []


def test_common_values_cover_every_common_key():
    assert set(COMMON_VALUES) == set(COMMON_KEYS)


def _common_cases():
    for backend, version in SNAPSHOTTED:
        for key in sorted(COMMON_KEYS):
            yield pytest.param(backend, version, key, id=f"{_id(backend, version)}-{key}")


@pytest.mark.parametrize(("backend", "version", "key"), list(_common_cases()))
def test_matrix_common_key(backend, version, key):
    values = COMMON_VALUES[key].get(backend, COMMON_VALUES[key]["*"])
    section, name = key.split(".")
    datas = []
    for value in values:
        data = _base(backend)
        if isinstance(value, With):
            value = value.apply(data)
        data.setdefault(section, {})[name] = value
        datas.append((f"{key}={value!r}", data))
    rendered, problems = _check_all(backend, version, datas)
    assert problems == []
    supports = registry.get(backend).supports
    if key in supports:
        assert rendered, f"{backend} supports {key} but refused every value of {values}"
    else:
        assert rendered == 0, f"{backend} does not support {key} yet rendered it"


def _option_values(backend: str, field: str, annotation) -> list:
    given = OPTION_VALUES.get(backend, {}).get(field)
    if given is not None:
        return given
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return list(args)
    for a in args:  # Optional[Literal[...]]
        if typing.get_origin(a) is typing.Literal:
            return list(typing.get_args(a))
    if annotation is bool or (args and all(a is bool for a in args)):
        return [True, False]
    return []


def _option_cases():
    for backend, version in SNAPSHOTTED:
        for field, info in registry.get(backend).Options.model_fields.items():
            yield pytest.param(
                backend, version, field, info.annotation, id=f"{_id(backend, version)}-{field}"
            )


def test_every_option_field_has_values():
    missing = [
        f"{b}: options.{field}"
        for b, _v, field, ann in (p.values for p in _option_cases())
        if not _option_values(b, field, ann)
    ]
    assert missing == [], "add realistic values to OPTION_VALUES"


@pytest.mark.parametrize(("backend", "version", "field", "annotation"), list(_option_cases()))
def test_matrix_option_field(backend, version, field, annotation):
    datas = []
    for value in _option_values(backend, field, annotation):
        data = _base(backend)
        if isinstance(value, With):
            value = value.apply(data)
        data.setdefault("options", {})[field] = value
        datas.append((f"options.{field}={value!r}", data))
    rendered, problems = _check_all(backend, version, datas)
    assert problems == []
    refusable = backend == "vllm" and field == "swap_space"  # gone in vLLM 0.18
    if not refusable:
        assert rendered == len(datas), f"{backend} {version} refused a value of options.{field}"


# -- flagcheck itself -----------------------------------------------------------------------

DEMO = {
    "schema": 1,
    "engine": "demo",
    "version": "1.0",
    "commands": [
        {
            "command": "demo serve",
            "options": {
                "--port": {"takes_value": True, "choices": None, "kind": "int"},
                "--dtype": {"takes_value": True, "choices": ["auto", "half"], "kind": "str"},
                "--api-keys": {"takes_value": True, "choices": None, "kind": "str", "nargs": "*"},
                "--devices": {
                    "takes_value": True,
                    "choices": ["cpu", "cuda"],
                    "kind": "str",
                    "nargs": "+",
                },
                "--lora": {"takes_value": True, "choices": None, "kind": "str", "nargs": 2},
                "--profile": {"takes_value": True, "choices": ["on", "off"], "nargs": "?"},
                "--seed": {"takes_value": True, "choices": None, "kind": "int"},
                "--eager": {"takes_value": False, "choices": None, "kind": None},
            },
        },
        {
            "command": "demo launch",
            "passes_unknown": True,
            "options": {"--model-name": {"takes_value": True, "choices": None, "kind": "str"}},
        },
        {
            "command": "python -m demo.server",
            "options": {"--port": {"takes_value": True, "choices": None, "kind": "int"}},
        },
    ],
}


def fails(argv: list[str], snapshot: dict = DEMO) -> list[tuple[str, str]]:
    return [(p.flag, p.message) for p in check_argv("s", argv, snapshot) if p.level == "fail"]


def test_exact_flags_pass():
    argv = ["demo", "serve", "model", "--port", "8000", "--dtype", "half", "--eager"]
    assert check_argv("s", argv, DEMO) == []


def test_abbreviation_is_refused_with_the_option_argparse_would_expand_it_to():
    vllm = committed_snapshot("vllm", committed_versions("vllm")[-1])
    argv = ["vllm", "serve", "org/m", "--gpu-mem", "0.7", "--port", "8000"]
    got = check_argv("server", argv, vllm)
    assert [(p.step, p.flag, p.level) for p in got] == [("server", "--gpu-mem", "fail")]
    assert "nearest real option: --gpu-memory-utilization" in got[0].message
    # a misspelling that is no abbreviation still names the closest real option
    got = check_argv("server", ["vllm", "serve", "m", "--gpu-memory-utilisation", "0.7"], vllm)
    assert "nearest real option: --gpu-memory-utilization" in got[0].message


def test_value_outside_the_choices_is_refused():
    got = fails(["demo", "serve", "m", "--dtype", "float64"])
    assert got == [("--dtype", "--dtype 'float64': demo 1.0 `demo serve` accepts auto, half")]


def test_inline_value():
    assert fails(["demo", "serve", "m", "--port=8000", "--dtype=half"]) == []
    assert [f for f, _ in fails(["demo", "serve", "m", "--dtype=float64"])] == ["--dtype"]
    got = fails(["demo", "serve", "m", "--por=8000", "--seed", "1"])
    assert [f for f, _ in got] == ["--por"]
    assert "nearest real option: --port" in got[0][1]


def test_nargs():
    # "*": every word up to the next option is a value (none of them a flag or positional)
    assert fails(["demo", "serve", "m", "--api-keys", "k1", "k2", "--port", "1"]) == []
    assert fails(["demo", "serve", "m", "--api-keys", "--eager"]) == []
    # "+": each value is checked against the choices
    assert fails(["demo", "serve", "m", "--devices", "cpu", "cuda"]) == []
    got = fails(["demo", "serve", "m", "--devices", "cpu", "tpu", "--eager"])
    assert got == [("--devices", "--devices 'tpu': demo 1.0 `demo serve` accepts cpu, cuda")]
    # "?": a value is optional
    assert fails(["demo", "serve", "m", "--profile", "--eager"]) == []
    assert [f for f, _ in fails(["demo", "serve", "m", "--profile", "maybe"])] == ["--profile"]
    # a count: exactly that many words, and too few is an error
    assert fails(["demo", "serve", "m", "--lora", "sql", "/adapters/sql", "--eager"]) == []
    assert fails(["demo", "serve", "m", "--lora", "sql"]) == [("--lora", "--lora needs a value")]


def test_negative_numbers_are_values_not_flags():
    assert fails(["demo", "serve", "m", "--seed", "-1", "--port", "8000"]) == []


def test_forwarded_flags_are_warnings_where_the_command_passes_unknown_ones_on():
    got = check_argv(
        "launch", ["demo", "launch", "--model-name", "q", "--max_num_seqs", "16"], DEMO
    )
    assert [(p.flag, p.level) for p in got] == [("--max_num_seqs", "warn")]
    assert "forwarded to the model" in got[0].message
    # ... and an error where it does not
    assert [f for f, _ in fails(["demo", "serve", "--max_num_seqs", "16"])] == ["--max_num_seqs"]


def test_only_the_commands_a_snapshot_covers_are_checked():
    assert check_argv("s", ["ollama", "create", "--bogus"], DEMO) == []
    assert check_argv("s", ["demo", "other", "--bogus"], DEMO) == []
    # `python3 -m ...` and a full path to the executable are the same command
    assert [f for f, _ in fails(["/venv/bin/python3", "-m", "demo.server", "--prt", "1"])] == [
        "--prt"
    ]
    assert [f for f, _ in fails(["/opt/demo/bin/demo", "serve", "--prt", "1"])] == ["--prt"]


def test_real_xinference_launch_forwards_but_checks_its_own_flags():
    doc = committed_snapshot("xinference", "4.1.0")
    argv = ["xinference", "launch", "--model-name", "q", "--env", "A", "1", "--max_num_seqs", "8"]
    got = check_argv("launch", argv, doc)
    assert [(p.flag, p.level) for p in got] == [("--max_num_seqs", "warn")]
    argv = ["xinference-local", "--host", "127.0.0.1", "--prot", "9997"]
    assert [(p.flag, p.level) for p in check_argv("server", argv, doc)] == [("--prot", "fail")]


def test_flagcheck_module_reads_the_committed_data():
    assert flagcheck.DATA.is_dir()
    for engine in ("lmdeploy", "sglang", "xinference", "infinity", "transformers", "vllm"):
        assert committed_versions(engine), f"no committed snapshot of {engine}"


# -- flag_snapshot.py reads what a backend declares ---------------------------------------------

FAKE_CLI = """
import argparse

def build_parser():
    p = argparse.ArgumentParser(prog="fake")
    p.add_argument("--port", type=int)
    p.add_argument("--mode", choices=["a", "b"])
    p.add_argument("--verbose", action="store_true")
    return p
"""


def _snapshot(spec: dict, pythonpath) -> tuple[int, str, str]:
    import os
    import subprocess
    import sys

    script = flagcheck.SNAPSHOT_SCRIPT
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.run(
        [sys.executable, str(script), "--spec", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_flag_snapshot_reads_a_declared_argparse_command(tmp_path):
    from llmdeploy_cli.capabilities import FlagCommand, FlagSource

    (tmp_path / "fake_cli.py").write_text(FAKE_CLI)
    source = FlagSource(
        "pytest", commands=(FlagCommand("fake serve", "argparse", "fake_cli:build_parser"),)
    )
    rc, out, err = _snapshot(source.as_spec("fake"), tmp_path)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["engine"] == "fake" and doc["distribution"] == "pytest" and doc["version"]
    opts = doc["commands"][0]["options"]
    assert doc["commands"][0]["command"] == "fake serve"
    assert opts["--port"] == {"takes_value": True, "choices": None, "kind": "int"}
    assert opts["--mode"]["choices"] == ["a", "b"]
    assert opts["--verbose"]["takes_value"] is False
    assert "--help" not in opts
    assert out == flag_snapshot.dumps(doc)  # one option per line, as committed


def test_flag_snapshot_runs_a_backend_reader_file(tmp_path):
    from llmdeploy_cli.capabilities import FlagSource

    (tmp_path / "fake_cli.py").write_text(FAKE_CLI)
    reader = tmp_path / "reader.py"
    reader.write_text(
        "import fake_cli\n\n"
        "def read(walkers):\n"
        "    parser = fake_cli.build_parser()\n"
        "    return [{'command': 'fake serve', 'options': walkers.argparse_options(parser)}]\n"
    )
    spec = FlagSource("pytest", reader_file=str(reader)).as_spec("fake")
    rc, out, err = _snapshot(spec, tmp_path)
    assert rc == 0, err
    assert set(json.loads(out)["commands"][0]["options"]) == {"--port", "--mode", "--verbose"}


def test_flag_snapshot_refuses_a_spec_it_cannot_read(tmp_path):
    rc, out, err = _snapshot({"engine": "fake"}, tmp_path)
    assert rc == 2 and out == "" and "not a flag spec" in err


def test_every_readable_backend_has_a_spec_the_cli_prints(capsys):
    from llmdeploy_cli.cli.app import main

    for name in sorted(READABLE):
        assert main(["backends", "--flag-spec", name]) == 0
        spec = json.loads(capsys.readouterr().out)
        assert spec["engine"] == name
        assert spec["commands"] or spec["reader_file"]
        if spec["reader_file"]:
            assert __import__("os").path.isfile(spec["reader_file"]), spec["reader_file"]


def test_the_declared_typer_reader_reads_the_installed_transformers(tmp_path):
    """transformers is in llmctl's own test env: its declared flag source (a Typer app,
    subcommand serve) read live gives the options of the committed snapshot."""
    import importlib.util

    if importlib.util.find_spec("transformers.cli.transformers") is None:
        pytest.skip("transformers with its CLI is not installed here")
    rc, out, err = _snapshot(flagcheck.spec_for("transformers"), tmp_path)
    assert rc == 0, err
    live = json.loads(out)["commands"][0]
    assert live["command"] == "transformers serve"
    committed = committed_snapshot("transformers", committed_versions("transformers")[-1])
    want = set(committed["commands"][0]["options"])
    missing = want - set(live["options"])
    assert len(missing) <= len(want) // 10, f"live read lacks {sorted(missing)}"
