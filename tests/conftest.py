"""Shared fixtures: an isolated state dir per test, the tiny model, profile helpers."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
GOLDEN = Path(__file__).resolve().parent / "golden"


# The engines folder CI keeps its engine installs in (.ci/run exports it): the engine tests
# install into it and reuse it. Every other test gets an empty one (under its state dir),
# since a profile with no runtime section runs the engine installed there (docs/engines.md).
CI_ENGINES_DIR = os.environ.get("LLMCTL_ENGINES_DIR")


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Every test gets its own llmctl state dir, so nothing leaks between tests."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("LLMCTL_STATE_DIR", str(state))
    monkeypatch.delenv("LLMCTL_ENGINES_DIR", raising=False)
    monkeypatch.delenv("LLMCTL_DEBUG", raising=False)
    return state


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama chat model directory (built once per session, ~5 s).

    Set LLMCTL_TINY_MODEL to a directory to reuse a model across sessions.
    """
    pytest.importorskip("torch", reason="the tiny model needs torch (make test installs it)")
    from tests.tinymodel import build_tiny_model

    cached = os.environ.get("LLMCTL_TINY_MODEL")
    if cached:
        return build_tiny_model(cached)
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def write_profile(tmp_path):
    """write_profile(yaml_text, name="p.yml") -> Path of a dedented profile file."""

    def _write(text: str, name: str = "p.yml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip())
        return p

    return _write


def have(executable: str) -> bool:
    return shutil.which(executable) is not None
