"""llmctl doctor: each check's level and fix, exit code 3 on a failure, --verify."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from llmdeploy_cli.cli.app import main
from llmdeploy_cli.models.checks_engine import check_engine_flags
from llmdeploy_cli.models.doctor import run_doctor
from llmdeploy_cli.models.gpus import GpuInfo
from llmdeploy_cli.models.units import GiB
from llmdeploy_cli.models.verify import git_blob_sha1, sha256_file, verify_model_files
from tests.fakes import listening_port


def no_gpu():
    return [], "nvidia-smi not found"


def one_gpu(total=80 * GiB, free=79 * GiB):
    return lambda: ([GpuInfo(0, "NVIDIA H100 80GB HBM3", total, free, "570.1", "12.8")], None)


def _by(report):
    return {c.check: c for c in report.checks}


@pytest.fixture
def vllm_profile(write_profile, tiny_model):
    return write_profile(
        f"""
        name: tiny
        backend: vllm
        model:
          source: {tiny_model}
        offline: true
        resources:
          max_model_len: 512
        server:
          port: auto
        """
    )


def test_complete_offline_profile(vllm_profile):
    report = run_doctor(vllm_profile, environ={}, gpu_query=one_gpu())
    checks = _by(report)
    assert checks["model.files"].level == "pass"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        assert checks[f"offline.env.{var}"].level == "pass"
    # not installed here: checked against llmctl's committed snapshot of that vLLM version
    assert checks["engine.flags"].level == "pass"
    assert "snapshot of vllm" in checks["engine.flags"].message
    assert checks["gpu"].level == "pass" and "H100" in checks["gpu"].message
    assert checks["gpu.memory"].level == "pass"
    assert checks["port"].level == "pass"
    assert all(c.fix for c in report.checks if c.level == "fail")


def test_gpu_memory_taken_fails(vllm_profile):
    report = run_doctor(vllm_profile, environ={}, gpu_query=one_gpu(free=10 * GiB))
    mem = _by(report)["gpu.memory"]
    assert mem.level == "fail" and "free" in mem.message and mem.fix


def test_gpu_engine_without_gpu_fails_cpu_engine_skips(vllm_profile, write_profile, tiny_model):
    assert _by(run_doctor(vllm_profile, environ={}, gpu_query=no_gpu))["gpu"].level == "fail"
    p = write_profile(
        f"""
        name: cpu
        backend: transformers
        model: {{source: {tiny_model}}}
        """,
        name="cpu.yml",
    )
    assert _by(run_doctor(p, environ={}, gpu_query=no_gpu))["gpu"].level == "skip"


def test_hub_id_not_cached_offline_fails(write_profile, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    p = write_profile(
        """
        name: hub
        backend: vllm
        model: {source: Org/Not-Here}
        offline: true
        hub: {source: modelscope}
        """
    )
    report = run_doctor(p, gpu_query=no_gpu)
    files = _by(report)["model.files"]
    assert files.level == "fail" and "pack" in files.fix
    # modelscope offline for vLLM needs VLLM_USE_MODELSCOPE=true, which the backend sets
    assert _by(report)["offline.env.VLLM_USE_MODELSCOPE"].level == "pass"
    assert not report.ok


def test_offline_env_missing_is_a_fail(write_profile, tiny_model):
    """A server environment without a variable the engine needs offline fails, with a fix
    (backends set them all, so the plan is stripped of two to show the check biting)."""
    import dataclasses

    from llmdeploy_cli.models.checks_model import check_offline
    from llmdeploy_cli.resolve import resolve

    p = write_profile(
        f"""
        name: x
        backend: xinference
        model: {{source: {tiny_model}}}
        offline: true
        options: {{model_name: llama-2-chat}}
        """
    )
    r = resolve(p, {})
    by = {c.check: c for c in check_offline(r.profile, r.plan, {})}
    assert by["offline.env.XINFERENCE_MODEL_SRC"].level == "pass"
    server = r.plan.server
    env = {
        k: v
        for k, v in server.command.env.items()
        if k not in ("HF_HUB_OFFLINE", "XINFERENCE_MODEL_SRC")
    }
    stripped = dataclasses.replace(server, command=dataclasses.replace(server.command, env=env))
    plan = dataclasses.replace(r.plan, steps=[stripped, *r.plan.steps[1:]])
    by = {c.check: c for c in check_offline(r.profile, plan, {})}
    for var in ("HF_HUB_OFFLINE", "XINFERENCE_MODEL_SRC"):
        assert by[f"offline.env.{var}"].level == "fail" and var in by[f"offline.env.{var}"].fix


@pytest.mark.parametrize(
    ("backend", "var", "value"),
    [
        ("vllm", "VLLM_USE_MODELSCOPE", "true"),
        ("sglang", "SGLANG_USE_MODELSCOPE", "true"),
        ("lmdeploy", "LMDEPLOY_USE_MODELSCOPE", "True"),
    ],
)
def test_offline_modelscope_variable_comes_from_the_backend(
    write_profile, tiny_model, backend, var, value
):
    """doctor's offline check asks the backend's declared hub variables: SGLang's ModelScope
    switch is required (and found in what the backend renders), like vLLM's and LMDeploy's;
    without it in the engine's environment the check fails naming it."""
    import dataclasses

    from llmdeploy_cli.models.checks_model import check_offline, offline_requirements
    from llmdeploy_cli.resolve import resolve

    p = write_profile(
        f"""
        name: ms
        backend: {backend}
        model: {{source: {tiny_model}}}
        offline: true
        hub: {{source: modelscope}}
        """
    )
    r = resolve(p, {})
    assert offline_requirements(r.profile)[var] == value
    by = {c.check: c for c in check_offline(r.profile, r.plan, {})}
    assert by[f"offline.env.{var}"].level == "pass"
    server = r.plan.server
    env = {k: v for k, v in server.command.env.items() if k != var}
    stripped = dataclasses.replace(server, command=dataclasses.replace(server.command, env=env))
    plan = dataclasses.replace(r.plan, steps=[stripped, *r.plan.steps[1:]])
    by = {c.check: c for c in check_offline(r.profile, plan, {})}
    assert by[f"offline.env.{var}"].level == "fail" and var in by[f"offline.env.{var}"].fix


def test_port_in_use(write_profile, tiny_model):
    with listening_port() as port:
        p = write_profile(
            f"""
            name: tiny
            backend: vllm
            model: {{source: {tiny_model}}}
            server: {{port: {port}}}
            """
        )
        check = _by(run_doctor(p, environ={}, gpu_query=no_gpu))["port"]
        assert check.level == "fail" and str(port) in check.message and check.fix


def test_flags_check_without_a_snapshot_is_a_named_skip(vllm_profile):
    from llmdeploy_cli.resolve import resolve

    r = resolve(vllm_profile, {}, engine_version="0.20.0")  # no snapshot of this version
    check = check_engine_flags(r.backend, r.profile, r.plan)
    assert check.check == "engine.flags" and check.level == "skip" and "snapshot" in check.message


def test_verify_against_hf_cache_blobs(tmp_path):
    blobs = tmp_path / "models--o--m" / "blobs"
    snap = tmp_path / "models--o--m" / "snapshots" / ("a" * 40)
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    big = tmp_path / "w"
    big.write_bytes(b"weights" * 100)
    small = tmp_path / "c"
    small.write_text("{}")
    (blobs / sha256_file(big)).write_bytes(big.read_bytes())
    (blobs / git_blob_sha1(small)).write_bytes(small.read_bytes())
    os.symlink(blobs / sha256_file(big), snap / "model.safetensors")
    os.symlink(blobs / git_blob_sha1(small), snap / "config.json")
    (res,) = verify_model_files(snap)
    assert res.level == "pass" and "2 files" in res.message
    (blobs / sha256_file(big)).write_bytes(b"tampered")
    (res,) = verify_model_files(snap)
    assert res.level == "fail" and "model.safetensors" in res.message


def test_cli_doctor_json_and_exit_code(vllm_profile, capsys):
    code = main(["doctor", str(vllm_profile), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["profile"] == "tiny"
    levels = {c["level"] for c in doc["checks"]}
    assert levels <= {"pass", "warn", "fail", "skip"}
    # vllm is not installed here, so the engine check fails -> exit 3
    if shutil.which("vllm") is None:
        assert code == 3 and not doc["ok"]


def test_tokenizer_from_elsewhere_and_remote_code_warning(write_profile, tiny_model, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_model, d)
    (d / "tokenizer.json").unlink()
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    (d / "config.json").write_text(json.dumps(cfg))
    p = write_profile(
        f"""
        name: t
        backend: vllm
        model: {{source: {d}, tokenizer: {tiny_model}}}
        """
    )
    checks = _by(run_doctor(p, environ={}, gpu_query=no_gpu))
    assert checks["model.files"].level == "pass"
    assert checks["model.remote_code"].level == "warn"


def test_wrong_flag_fails_the_flags_check(write_profile):
    p = write_profile(
        """
        name: v
        backend: vllm
        model: {source: Qwen/Qwen2.5-0.5B}
        runtime: {engine_version: 0.33.0}
        extra_args: ["--max-model", "2048"]
        """,
        name="bad-flag.yml",
    )
    flags = _by(run_doctor(p, environ={}, gpu_query=one_gpu()))["engine.flags"]
    assert flags.level == "fail" and "--max-model" in flags.message and flags.fix


def test_doctor_and_preflight_share_one_port_check(write_profile, tiny_model):
    """One catalog (models/catalog.py): the port check serve's preflight runs is the one
    doctor runs, same message (with the holder) and fix; doctor alone adds pass verdicts."""
    from llmdeploy_cli import preflight
    from llmdeploy_cli.models.catalog import BOTH, CATALOG
    from llmdeploy_cli.resolve import resolve

    assert {c.name for c in CATALOG if c.runs == BOTH} >= {"port", "model.files", "gpu"}
    with listening_port() as port:
        p = write_profile(
            f"""
            name: shared
            backend: transformers
            model: {{source: {tiny_model}}}
            server: {{host: 127.0.0.1, port: {port}}}
            """
        )
        by_doctor = _by(run_doctor(p, environ={}, gpu_query=no_gpu))["port"]
        found = preflight.problems(resolve(p, {}), environ={}, gpu_query=no_gpu)
        by_preflight = next(x for x in found if x.check == "port")
        assert by_doctor == by_preflight
        assert by_doctor.level == "fail" and f"pid {os.getpid()}" in by_doctor.message
        assert all(x.level in ("fail", "warn") for x in found)


def test_doctor_inspects_the_model_once(vllm_profile, monkeypatch):
    """The model check's inspection (config.json, safetensors headers) serves the context,
    card and memory checks after it: no second read of the same files in one run."""
    from llmdeploy_cli.models import inspect

    calls = []
    real = inspect.inspect_model
    monkeypatch.setattr(inspect, "inspect_model", lambda p: calls.append(p) or real(p))
    checks = _by(run_doctor(vllm_profile, environ={}, gpu_query=one_gpu()))
    assert checks["gpu.memory"].level == "pass" and checks["model.context"].level == "pass"
    assert len(calls) == 1
