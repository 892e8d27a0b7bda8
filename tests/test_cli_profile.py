"""init / validate / render / backends through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmdeploy_cli.cli.app import main
from tests.conftest import PROFILES

GOOD = """
name: demo
backend: transformers
model:
  source: /models/tiny
server:
  port: 8123
env:
  MY_API_KEY: sk-very-secret-value
"""


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_writes_a_profile_that_validates(tmp_path, capsys):
    for backend in ("transformers", "vllm", "lmdeploy", "ollama", "xinference"):
        out = tmp_path / f"{backend}.yml"
        code, _, err = run(
            capsys, "init", "--backend", backend, "--model", "/nowhere/model", "-o", str(out)
        )
        assert code == 0, err
        code, _, err = run(capsys, "validate", str(out))
        assert code == 0, f"{backend}: {err}"


def test_init_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "p.yml"
    out.write_text("keep me")
    code, _, err = run(capsys, "init", "-b", "transformers", "-m", "x/y", "-o", str(out))
    assert code == 2 and "--force" in err
    assert out.read_text() == "keep me"


def test_validate_reports_every_file_and_problem(write_profile, capsys):
    good = write_profile(GOOD, "good.yml")
    bad = write_profile(GOOD.replace("port: 8123", "port: 0\n  hots: x"), "bad.yml")
    code, _, err = run(capsys, "validate", str(good), str(bad))
    assert code == 2
    assert "bad.yml:6: server.port" in err and "bad.yml:7: server.hots" in err
    assert "did you mean 'host'" in err
    assert "Traceback" not in err


def test_validate_json_lists_issues(write_profile, capsys):
    bad = write_profile(GOOD.replace("port: 8123", "port: nope"), "bad.yml")
    code, out, _ = run(capsys, "validate", str(bad), "--json")
    doc = json.loads(out)
    assert code == 2 and doc["schema_version"] == 1 and doc["ok"] is False
    [issue] = doc["files"][0]["issues"]
    assert issue["key"] == "server.port" and issue["line"] == 6


def test_render_text_and_json_redact_secrets(write_profile, capsys):
    path = write_profile(GOOD)
    code, out, _ = run(capsys, "render", str(path))
    assert code == 0
    assert "transformers serve /models/tiny" in out and "--port 8123" in out
    assert "sk-very-secret-value" not in out
    code, out, _ = run(capsys, "render", str(path), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["schema_version"] == 1
    step = doc["steps"][0]
    assert step["argv"][:3] == ["transformers", "serve", "/models/tiny"]
    assert step["env"]["MY_API_KEY"] == "***"
    assert doc["endpoint"] == {
        "base_url": "http://127.0.0.1:8123/v1",
        "health_url": "http://127.0.0.1:8123/health",
        "model": "/models/tiny",
        "task": "chat",
    }
    assert "sk-very-secret-value" not in out


def test_unknown_backend_lists_known_ones(write_profile, capsys):
    path = write_profile(GOOD.replace("backend: transformers", "backend: vllmm"))
    code, _, err = run(capsys, "render", str(path))
    assert code == 2 and "vllmm" in err and "vllm" in err and "transformers" in err


def test_key_a_backend_cannot_honour_names_the_backend(write_profile, capsys):
    path = write_profile(GOOD + "resources:\n  max_num_seqs: 4\n")
    code, _, err = run(capsys, "validate", str(path))
    assert code == 2
    assert "resources.max_num_seqs" in err and "backend 'transformers' cannot honour" in err


def test_error_envelope_under_json(capsys, tmp_path):
    code, out, _ = run(capsys, "render", str(tmp_path / "missing.yml"), "--json")
    doc = json.loads(out)
    assert code == 2
    assert doc["error"]["code"] == 2 and "not found" in doc["error"]["message"]


def test_usage_error_exit_2(capsys):
    code, _, err = run(capsys, "render")
    assert code == 2 and "Missing argument" in err


def test_backends_lists_every_builtin(capsys):
    code, out, _ = run(capsys, "backends", "--json")
    assert code == 0
    names = {b["name"] for b in json.loads(out)["backends"]}
    assert {"transformers", "vllm", "lmdeploy", "ollama", "xinference"} <= names


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.yml")), ids=lambda p: p.stem)
def test_examples_validate(path, capsys, monkeypatch):
    monkeypatch.setenv("LLMCTL_API_KEY", "x")
    code, _, err = run(capsys, "validate", str(path))
    assert code == 0, err


def test_console_script_exit_codes(tmp_path):
    """The installed entry point, as scripts call it."""
    proc = subprocess.run(
        [sys.executable, "-m", "llmdeploy_cli", "validate", str(tmp_path / "nope.yml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def _model_folder(root, name: str, arch: str):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"architectures": [arch]}))
    return d


@pytest.mark.parametrize(
    ("folder", "arch", "family", "size"),
    [
        ("Qwen2.5-0.5B-Instruct", "Qwen2ForCausalLM", "qwen2.5-instruct", "0_5"),
        ("Meta-Llama-3.1-8B-Instruct", "LlamaForCausalLM", "llama-3.1-instruct", "8"),
        ("tiny-model", "LlamaForCausalLM", "llama-2-chat", "7"),  # the default for Llama
        ("Qwen3-0.6B", "Qwen3ForCausalLM", "qwen3", "0_6"),
    ],
)
def test_init_xinference_names_the_family_of_a_local_folder(
    tmp_path, capsys, folder, arch, family, size
):
    import yaml

    model = _model_folder(tmp_path, folder, arch)
    out = tmp_path / "xi.yml"
    code, _, err = run(capsys, "init", "-b", "xinference", "-m", str(model), "-o", str(out))
    assert code == 0, err
    doc = yaml.safe_load(out.read_text())
    assert doc["options"]["model_name"] == family
    assert doc["options"]["model_format"] == "pytorch"
    assert str(doc["options"]["model_size_in_billions"]) == size
    assert doc["env"] == {"XINFERENCE_ENABLE_VIRTUAL_ENV": "0"}
    assert doc["model"]["source"] == str(model)
    code, _, err = run(capsys, "validate", str(out))
    assert code == 0, err
    code, rendered, err = run(capsys, "render", "--json", str(out))
    assert "options.model_name is not set" not in err
    launch = json.loads(rendered)["steps"][1]["argv"]
    assert launch[launch.index("--model-name") + 1] == family


def test_init_xinference_without_a_matching_family_names_the_choices(tmp_path, capsys):
    model = _model_folder(tmp_path, "my-gpt", "GPT2LMHeadModel")
    code, text, err = run(capsys, "init", "-b", "xinference", "-m", str(model))
    assert code == 0, err
    assert "options: {}" in text
    assert "no built-in chat family of Xinference 4.1 has GPT2LMHeadModel" in text
    # an architecture with several families and no default: they are named
    from llmctl_backends.xinference.families import CHAT_FAMILIES

    model = _model_folder(tmp_path, "mystery", "Gemma3ForCausalLM")
    code, text, err = run(capsys, "init", "-b", "xinference", "-m", str(model))
    assert "gemma-3-1b-it" in text  # its only family: chosen
    many = next(a for a, f in CHAT_FAMILIES.items() if len(f) > 2 and a != "LlamaForCausalLM"
                and a not in ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM",
                              "Phi3ForCausalLM"))  # fmt: skip
    model = _model_folder(tmp_path, "unnamed", many)
    code, text, err = run(capsys, "init", "-b", "xinference", "-m", str(model))
    assert f"set the family ({many}: one of {', '.join(CHAT_FAMILIES[many])})" in text
    assert "options: {}" in text


def test_init_names_the_engine_llmctl_installed(tmp_path, capsys, monkeypatch):
    import yaml

    from llmdeploy_cli.engines import store

    engines = tmp_path / "engines"
    monkeypatch.setenv("LLMCTL_ENGINES_DIR", str(engines))
    out = tmp_path / "a.yml"
    code, _, err = run(capsys, "init", "-b", "xinference", "-m", "qwen2.5-instruct",
                       "-o", str(out))  # fmt: skip
    assert code == 0, err
    assert "runtime" not in yaml.safe_load(out.read_text())  # nothing installed: PATH
    env = engines / "xinference-4.1.0-cpu"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "xinference-local").write_text("#!/bin/sh\n")
    (env / "bin" / "xinference-local").chmod(0o755)
    store.write_manifest(env, {"engine": "xinference", "version": "4.1.0", "device": "cpu"})
    code, _, err = run(capsys, "init", "-b", "xinference", "-m", "qwen2.5-instruct",
                       "-o", str(out), "--force")  # fmt: skip
    assert code == 0, err
    assert yaml.safe_load(out.read_text())["runtime"] == {"venv": "engine:xinference@4.1.0"}
    code, _, err = run(capsys, "validate", str(out))
    assert code == 0, err
