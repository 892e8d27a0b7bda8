"""Standalone parser readers of the built-in engines whose CLI parser needs more than a
declared import target (a platform to fake, modules to stub, a subparser to find).

Each file here is run inside the engine's own environment by llmdeploy_cli/flag_snapshot.py
(loaded by path, never imported as part of llmctl): it may import only the standard
library and the engine, and defines `read(walkers) -> list[dict]`, where `walkers` is
flag_snapshot.py with its parser walkers (argparse_options, click_options, ...). A backend
points at its file with `FlagSource(reader_file=reader_path("vllm"))`.
"""

from __future__ import annotations

from pathlib import Path


def reader_path(name: str) -> str:
    """The absolute path of this folder's reader file NAME.py."""
    return str(Path(__file__).resolve().with_name(f"{name}.py"))
