"""doctor's engine checks: an installed engine older than what llmctl renders for (the
backend's declared min_version) fails, naming the version needed."""

from __future__ import annotations

import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.models.checks_engine import check_engine
from llmdeploy_cli.models.doctor import run_doctor
from llmdeploy_cli.profile import load_profile


def _venv(tmp_path, version: str):
    venv = tmp_path / f"venv-{version}"
    (venv / "bin").mkdir(parents=True)
    exe = venv / "bin" / "transformers"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    site = venv / "lib" / "python3.12" / "site-packages"
    (site / f"transformers-{version}.dist-info").mkdir(parents=True)
    (site / f"transformers-{version}.dist-info" / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: transformers\nVersion: {version}\n"
    )
    return venv


def _profile(write_profile, venv):
    return write_profile(
        f"""
        name: old
        backend: transformers
        model: {{source: org/model}}
        runtime: {{venv: {venv}}}
        """
    )


def test_every_backend_declares_a_minimum_or_none():
    for name in registry.names():
        oldest = registry.get(name).min_version
        assert oldest is None or oldest[0].isdigit()
    assert registry.get("transformers").min_version == "5.2.0"


@pytest.mark.parametrize(("version", "level"), [("5.1.0", "fail"), ("5.2.0", "pass")])
def test_engine_older_than_the_declared_minimum_fails(write_profile, tmp_path, version, level):
    p = _profile(write_profile, _venv(tmp_path, version))
    by = {c.check: c for c in check_engine(registry.get("transformers"), load_profile(p, {}))}
    got = by["engine.version"]
    assert got.level == level, got
    if level == "fail":
        assert "5.2.0 or later" in got.message and "5.1.0" in got.message
        assert "upgrade transformers to 5.2.0" in got.fix
        assert got.data["min_version"] == "5.2.0"


def test_doctor_exit_reflects_an_old_engine(write_profile, tmp_path):
    p = _profile(write_profile, _venv(tmp_path, "4.57.1"))
    report = run_doctor(p, environ={}, gpu_query=lambda: ([], "no nvidia-smi"))
    assert not report.ok
    assert {c.check: c for c in report.checks}["engine.version"].level == "fail"
