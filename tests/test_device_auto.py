"""`resources.device: auto` (issue 18): the GPU when there is one and the memory plan fits
its free memory, else the CPU, said loudly; decided by doctor/serve, never by render.

The GPU side goes through a fake nvidia-smi on PATH (CSV like the real one); the CPU side
through a PATH without one. One real serve: the tiny GGUF in llama.cpp's server (xllamacpp)
falls back to the CPU with one warning line and `device_decision` in `serve --json`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

from llmdeploy_cli.cli.app import main
from tests.fakes import fake_nvidia_smi
from tests.serve.conftest import json_out, llmctl, llmctl_env

H100 = "0, NVIDIA H100 80GB HBM3, 81559, 81000, 570.86, 9.0"
H100_BUSY = "0, NVIDIA H100 80GB HBM3, 81559, 12, 570.86, 9.0"  # 12 MiB free


@pytest.fixture
def no_gpu(monkeypatch, tmp_path):
    empty = tmp_path / "no-gpu-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}{os.pathsep}/usr/bin{os.pathsep}/bin")


def with_gpu(monkeypatch, tmp_path, rows: str) -> None:
    d = fake_nvidia_smi(tmp_path / "gpu-bin", rows)
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}/usr/bin{os.pathsep}/bin")


def profile(tmp_path: Path, model, backend="transformers", device="auto", **extra) -> Path:
    doc = {
        "name": "dev",
        "backend": backend,
        "model": {"source": str(model)},
        "resources": {"device": device},
        **extra,
    }
    p = tmp_path / "dev.yml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def doctor(path: Path, capsys) -> dict:
    capsys.readouterr()
    main(["doctor", str(path), "--json"])
    return {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


def test_no_gpu_falls_back_to_the_cpu(tiny_model, tmp_path, capsys, no_gpu):
    checks = doctor(profile(tmp_path, tiny_model), capsys)
    d = checks["device"]
    assert d["level"] == "warn" and d["message"].startswith("auto -> cpu: no NVIDIA GPU found")
    assert "device: cuda" in d["fix"]
    assert "gpu.memory" not in checks  # the checks after it see the CPU


def test_a_gpu_that_fits_is_used(tiny_model, tmp_path, capsys, monkeypatch):
    with_gpu(monkeypatch, tmp_path, H100)
    d = doctor(profile(tmp_path, tiny_model), capsys)["device"]
    assert d["level"] == "pass" and d["message"].startswith("auto -> cuda: GPU 0 (NVIDIA H100")
    assert "free of" in d["message"]


def test_a_gpu_without_free_memory_falls_back(tiny_model, tmp_path, capsys, monkeypatch):
    with_gpu(monkeypatch, tmp_path, H100_BUSY)
    d = doctor(profile(tmp_path, tiny_model), capsys)["device"]
    assert d["level"] == "warn" and d["message"].startswith("auto -> cpu: the memory plan needs")
    assert "GPU 0 (NVIDIA H100 80GB HBM3) has 0.01 GiB free of 79.65 GiB" in d["message"]


def test_cuda_never_falls_back(tiny_model, tmp_path, capsys, no_gpu):
    checks = doctor(profile(tmp_path, tiny_model, device="cuda"), capsys)
    assert "device" not in checks
    from llmdeploy_cli.resolve import resolve

    r = resolve(profile(tmp_path, tiny_model, device="cuda"))
    assert r.profile.resources.device == "cuda" and r.profile.device_decision is None


def test_render_and_validate_stay_static(tiny_model, tmp_path, capsys, no_gpu):
    p = profile(tmp_path, tiny_model)
    capsys.readouterr()
    assert main(["render", "--json", str(p)]) == 0
    doc = json.loads(capsys.readouterr().out)
    argv = doc["steps"][0]["argv"]
    assert argv[argv.index("--device") + 1] == "auto"
    assert not any("auto ->" in w for w in doc["warnings"])
    assert main(["validate", str(p)]) == 0


def test_serve_resolution_renders_the_decided_device(tiny_model, tmp_path, no_gpu):
    from llmdeploy_cli.resolve import resolve

    r = resolve(profile(tmp_path, tiny_model))
    argv = [str(a) for a in r.plan.server.command.argv]
    assert argv[argv.index("--device") + 1] == "cpu"
    assert r.plan.warnings[0].startswith("resources.device auto -> cpu: no NVIDIA GPU found")
    assert r.profile.device_decision.as_dict()["fallback"] is True


def test_a_gpu_only_engine_treats_auto_as_the_gpu(tmp_path, no_gpu):
    """SGLang cannot run on CPU: auto means the GPU (its render is not changed)."""
    from llmdeploy_cli.resolve import resolve

    r = resolve(profile(tmp_path, "Qwen/Qwen2.5-0.5B-Instruct", backend="sglang"))
    d = r.profile.device_decision
    assert d.device == "cuda" and not d.fallback and "does not run on CPU" in d.reason
    assert r.profile.resources.device == "auto"
    assert "--device" not in [str(a) for a in r.plan.server.command.argv]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None, reason="the xllamacpp wheel is not installed"
)
def test_serve_says_the_fallback_in_one_line_and_in_json(tiny_model, tmp_path):
    pytest.importorskip("gguf", reason="writing a GGUF needs the gguf package (test extra)")
    from tests.gguf_model import write_gguf

    gguf = write_gguf(tiny_model, tmp_path / "tiny.gguf")
    p = tmp_path / "cpu-auto.yml"
    p.write_text(
        yaml.safe_dump(
            {
                "name": "cpu-auto",
                "backend": "llamacpp",
                "model": {"source": str(gguf), "served_name": "tiny"},
                "server": {"port": "auto"},
                "resources": {"device": "auto", "max_model_len": 256, "max_num_seqs": 1},
                "options": {"runtime": "xllamacpp", "threads": 1, "webui": False},
                "smoke": {"max_tokens": 4},
            },
            sort_keys=False,
        )
    )
    empty = tmp_path / "no-gpu-bin"
    empty.mkdir()
    env = llmctl_env(LLMCTL_STATE_DIR=tmp_path / "state")
    env["PATH"] = f"{empty}{os.pathsep}{Path(os.sys.executable).parent}{os.pathsep}/usr/bin:/bin"
    try:
        r = llmctl("serve", p, "--detach", "--json", "--timeout", "120", env=env, timeout=180)
        assert r.returncode == 0, r.stderr[-3000:]
        lines = [ln for ln in r.stderr.splitlines() if "auto -> cpu" in ln]
        assert len(lines) == 1, r.stderr
        assert "no NVIDIA GPU found" in lines[0]
        doc = json_out(r)
        assert doc["device_decision"]["device"] == "cpu"
        assert doc["device_decision"]["fallback"] is True
        assert doc["device_decision"]["reason"].startswith("no NVIDIA GPU found")
    finally:
        llmctl("stop", "cpu-auto", env=env, timeout=60)
