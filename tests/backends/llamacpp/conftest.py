"""Fixtures for the llama.cpp tests: the tiny test model written as one GGUF file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model, tmp_path_factory) -> Path:
    """tests/tinymodel.py's model as an F32 GGUF (tests/gguf_model.py), once per session.

    Set LLMCTL_TINY_GGUF to a file path to reuse one across sessions.
    """
    pytest.importorskip("gguf", reason="writing a GGUF needs the gguf package (test extra)")
    from tests.gguf_model import write_gguf

    cached = os.environ.get("LLMCTL_TINY_GGUF")
    out = Path(cached) if cached else tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(tiny_model, out)
