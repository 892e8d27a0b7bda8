"""A third-party backend gets every command with zero edits to llmdeploy_cli/.

tests/plugin_backend is a plugin package of its own (pyproject.toml, entry point `echo` in
`llmctl.backends`) for echo-engine, a stand-in server (echo_engine_src) that answers with
the prompt. The plugin is installed into a folder only the `llmctl` subprocesses below
have on PYTHONPATH (plugin_env.py); they drive validate, render, flag checking, doctor,
plan, export, `engine install` (a real wheel from a local folder, no network), and serve
with its smoke test. The main process never loads the plugin.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmdeploy_cli import registry
from tests.fakes import free_port
from tests.plugin_backend.plugin_env import (
    build_engine_wheel,
    install_plugin,
    llmctl,
    plugin_env,
)


def _tiny_model(folder: Path) -> Path:
    """A complete (if useless) HF model folder: config, one safetensors file, a tokenizer."""
    folder.mkdir(parents=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 256,
        "max_position_embeddings": 512,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config))
    size = 256 * 64 * 4
    header = {"model.embed_tokens.weight": {"dtype": "F32", "shape": [256, 64]}}
    header["model.embed_tokens.weight"]["data_offsets"] = [0, size]
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(size))
    tok = {"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    return folder


class Setup:
    def __init__(self, base: Path):
        self.base = base
        self.site = install_plugin(base / "site")
        self.wheels = base / "wheels"
        build_engine_wheel(self.wheels)
        self.model = _tiny_model(base / "model")
        self.port = free_port()
        self.env = plugin_env(
            self.site,
            LLMCTL_STATE_DIR=str(base / "state"),
            LLMCTL_ENGINES_DIR=str(base / "engines"),
            # engine install finds the echo-engine wheel here and nowhere else
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(self.wheels),
            UV_NO_INDEX="1",
            UV_FIND_LINKS=str(self.wheels),
        )

    def profile(
        self, extra: str = "", name: str = "echo.yml", option: str = 'reply_prefix: "echo: "'
    ) -> Path:
        p = self.base / name
        text = f"""
            name: echo-demo
            backend: echo
            model:
              source: {self.model}
            server:
              port: {self.port}
            resources:
              device: cpu
            options:
              {option}
            """
        p.write_text(textwrap.dedent(text).lstrip() + textwrap.dedent(extra))
        return p

    def run(self, *args: str, timeout: float = 300):
        return llmctl([str(a) for a in args], self.env, self.base, timeout=timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("plugin"))


def _json(proc) -> dict:
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def test_the_main_process_never_loads_the_plugin(setup):
    assert "echo" not in registry.names()
    assert "llmctl_echo" not in sys.modules


def test_the_plugin_keeps_the_capability_contract(setup):
    code = "from tests.backends.contract import contract_problems; print(contract_problems('echo'))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=setup.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_backends_lists_it_from_its_own_package(setup):
    rows = {r["name"]: r for r in _json(setup.run("backends", "--json"))["backends"]}
    assert rows["echo"]["package"] == "llmctl-echo-backend"
    assert rows["echo"]["entry_point"] == "llmctl_echo.backend:EchoBackend"
    assert rows["vllm"]["package"] == "llmdeploy-cli"
    caps = rows["echo"]["capabilities"]
    assert caps["tasks"] == ["chat"] and caps["routes"] == ["/v1/chat/completions"]
    assert caps["install"] == {"default_version": "0.1.0", "devices": ["cpu"]}
    assert caps["hub"]["modelscope"] == "not supported"
    assert caps["memory"]["sizing"] == "none"
    # a NOT_SUPPORTED capability (llama.cpp's server has no Python parser to read)
    assert rows["llamacpp"]["capabilities"]["flag_source"] == "not supported"
    assert rows["llamacpp"]["capabilities"]["install"]["devices"] == ["cpu", "cuda"]


def test_validate_and_render(setup):
    p = setup.profile()
    proc = setup.run("validate", p)
    assert proc.returncode == 0, proc.stderr
    assert "echo-demo: echo ->" in proc.stdout
    doc = _json(setup.run("render", p, "--json"))
    assert doc["steps"][0]["argv"] == [
        "echo-engine",
        "serve",
        "--model",
        str(setup.model),
        "--served-name",
        "echo-demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(setup.port),
        "--reply-prefix",
        "echo: ",
    ]
    bad = setup.profile(name="bad-option.yml", option="reply_prefx: x")
    proc = setup.run("validate", bad)
    assert proc.returncode == 2 and "not an option of backend 'echo'" in proc.stderr
    assert "did you mean 'reply_prefix'" in proc.stderr and "Traceback" not in proc.stderr


def test_flags_are_checked_against_the_plugins_own_snapshot(setup):
    doc = _json(setup.run("render", setup.profile(), "--json", "--check-flags"))
    assert doc["flags"]["checked"] and doc["flags"]["problems"] == []
    assert doc["flags"]["source"] == "llmctl's snapshot of echo 0.1.0"
    typo = setup.profile('extra_args: ["--reply-pre", "x"]\n', name="typo.yml")
    proc = setup.run("render", typo, "--check-flags")
    assert proc.returncode == 2
    assert "--reply-pre is not an option of echo 0.1.0" in proc.stderr
    assert "nearest real option: --reply-prefix" in proc.stderr


def test_doctor_names_the_install_command(setup):
    doc = _json(setup.run("doctor", setup.profile(), "--json"))
    checks = {c["check"]: c for c in doc["checks"]}
    assert checks["engine.installed"]["level"] == "fail"
    assert "llmctl engine install echo" in checks["engine.installed"]["fix"]
    assert checks["model.files"]["level"] == "pass"
    assert checks["engine.flags"]["level"] == "pass"


def test_plan_uses_the_plugins_memory_rule(setup):
    doc = _json(setup.run("plan", setup.profile(), "--gpu-mem", "8GiB", "--json"))
    assert doc["engine"] == "echo" and doc["fits"] is True
    assert doc["budget_rule"].startswith("no pre-allocated pool")


def test_export_takes_image_and_cache_from_the_container_capability(setup):
    proc = setup.run("export", setup.profile(), "--to", "kubernetes")
    assert proc.returncode == 0, proc.stderr
    assert "image: registry.example/echo-engine:0.1.0" in proc.stdout
    assert "mountPath: /root/.cache/huggingface" in proc.stdout
    unit = setup.run("export", setup.profile(), "--to", "systemd")
    assert unit.returncode == 0, unit.stderr
    assert "ExecStart=echo-engine serve --model" in unit.stdout


def test_engine_install_then_the_installed_engine_is_checked_and_served(setup):
    proc = setup.run("engine", "install", "echo", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["engine"] == "echo" and manifest["version"] == "0.1.0"
    assert manifest["constraints"] == "echo-0.1.0-cpu.txt"
    assert Path(manifest["path"], "bin", "echo-engine").exists()
    refused = setup.run("engine", "install", "echo", "--device", "cuda")
    assert refused.returncode == 2 and "it runs on: cpu" in refused.stderr

    p = setup.profile("runtime:\n  venv: engine:echo\n", name="installed.yml")
    doc = _json(setup.run("render", p, "--json", "--check-flags"))
    assert doc["version_source"].startswith("dist-info")
    assert doc["flags"]["source"].startswith("installed echo 0.1.0")
    assert doc["flags"]["problems"] == []
    doctor = _json(setup.run("doctor", p, "--json"))
    assert doctor["ok"], doctor["checks"]

    try:
        served = setup.run("serve", p, "--detach", timeout=120)
        assert served.returncode == 0, served.stderr
        assert "smoke ok" in served.stderr
    finally:
        setup.run("stop", "echo-demo", timeout=60)
