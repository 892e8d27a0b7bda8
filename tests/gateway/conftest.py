"""Gateway test helpers: profiles for the tiny GGUF model and a gateway file next to them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.fakes import tiny_gguf_file


def llama_profile(folder: Path, name: str, gguf: Path | str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.yml"
    p.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            backend: llamacpp
            model:
              source: {gguf}
              served_name: {name}
            resources:
              device: cpu
              max_model_len: 256
              max_num_seqs: 2
            options:
              runtime: xllamacpp
              threads: 1
              webui: false
            """
        )
        + extra
    )
    return p


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
