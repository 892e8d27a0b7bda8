"""Fixtures for the llama.cpp tests: the tiny test model written as one GGUF file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import tiny_gguf_file


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model, tmp_path_factory) -> Path:
    """tests/tinymodel.py's model as an F32 GGUF (tests/gguf_model.py), once per session.

    Set LLMCTL_TINY_GGUF to a file path to reuse one across sessions.
    """
    return tiny_gguf_file(tiny_model, tmp_path_factory)
