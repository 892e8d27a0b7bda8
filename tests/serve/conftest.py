"""Helpers for serve tests: run llmctl as a real process, stand-in engines, process checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fakes import fake_nvidia_smi

ENGINES = Path(__file__).resolve().parent / "engines"
BIN = str(Path(sys.executable).parent)


def llmctl_env(**extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.pop("LLMCTL_DEBUG", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def llmctl(*args, timeout=120, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmdeploy_cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or llmctl_env(),
        **kw,
    )


def popen_llmctl(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llmdeploy_cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or llmctl_env(),
    )


def json_out(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout)


def alive(pid: int | None) -> bool:
    import psutil

    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(cond, timeout=30.0, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def group_left(pgid: int) -> list[int]:
    from llmdeploy_cli.supervise.process import group_members

    return group_members(pgid)


def read_state(name: str, state_dir: str | Path | None = None) -> dict | None:
    root = Path(state_dir or os.environ["LLMCTL_STATE_DIR"])
    p = root / "runs" / f"{name}.json"
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, ValueError):
        return None


def kill_quietly(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture(autouse=True)
def _a_gpu_for_the_stand_ins(tmp_path_factory, monkeypatch):
    """The stand-in engines play GPU engines (vLLM): serve's preflight checks for an NVIDIA
    card as doctor does, so these tests run on a machine that has one, through a fake
    nvidia-smi (one 80 GiB card, compute capability 9.0). CPU profiles skip the check."""
    d = fake_nvidia_smi(
        tmp_path_factory.mktemp("gpu-bin"), "0, NVIDIA H100 80GB HBM3, 81559, 81000, 570.86, 9.0"
    )
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def fake_engine(tmp_path):
    """fake_engine("crash") -> path of an executable stand-in engine (tests/serve/engines)."""

    def make(name: str) -> Path:
        src = (ENGINES / f"{name}.py").read_text()
        exe = tmp_path / f"fake-{name}"
        exe.write_text(f"#!{sys.executable}\n{src}")
        exe.chmod(0o755)
        return exe

    return make


@pytest.fixture
def profile_file(tmp_path):
    """profile_file(name, model_dir, extra_yaml) -> a profile (transformers on CPU by default).

    `extra` is appended as top-level YAML (health:, restart:, runtime:, ...)."""

    def make(name: str, model: Path, extra: str = "", backend: str = "transformers") -> Path:
        lines = [
            f"name: {name}",
            f"backend: {backend}",
            "model:",
            f"  source: {model}",
        ]
        if backend == "transformers":
            lines += ["  dtype: float32", "resources:", "  device: cpu"]
        lines += ["server:", "  host: 127.0.0.1", "  port: auto"]
        p = tmp_path / f"{name}.yml"
        p.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra).lstrip())
        return p

    return make
