"""Gateway test helpers: profiles for the tiny GGUF model and a gateway file next to them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.fakes import llamacpp_profile, tiny_gguf_file


def llama_profile(folder: Path, name: str, gguf: Path | str, extra: str = "") -> Path:
    return llamacpp_profile(folder, name, gguf, extra=extra)


@pytest.fixture
def gwdir(tmp_path) -> Path:
    return tmp_path


def write_gateway(folder: Path, body: str) -> Path:
    f = folder / "gateway.yml"
    f.write_text(textwrap.dedent(body))
    return f


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model, tmp_path_factory) -> Path:
    """tests/tinymodel.py's model as an F32 GGUF (LLMCTL_TINY_GGUF reuses one)."""
    return tiny_gguf_file(tiny_model, tmp_path_factory)
