"""How commands print: data to stdout (text or JSON), progress and errors to stderr.

The core never prints; commands call these helpers. Every JSON document carries
`schema_version`; failures under --json print the error envelope (docs/design.md §9) on stdout.
"""

from __future__ import annotations

import json
import sys
from functools import cache

SCHEMA_VERSION = 1


@cache
def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: dict) -> None:
    doc = {"schema_version": SCHEMA_VERSION, **data}
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    sys.stdout.flush()


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def info(text: str) -> None:
    """Progress for a human, on stderr (markup allowed)."""
    err_console().print(text)


def warn(text: str) -> None:
    _plain_stderr(_paint("warning:", "33") + " " + text)


def error_text(message: str, hint: str | None = None) -> None:
    _plain_stderr(_paint("error:", "1;31") + " " + message)
    if hint:
        _plain_stderr("  " + _paint("hint:", "2") + " " + hint)


# Warnings and errors are single lines: written without Rich, so a command that only warns
# (render, validate) does not pay for importing it.


def _plain_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _paint(text: str, sgr: str) -> str:
    import os

    if os.environ.get("NO_COLOR") or not sys.stderr.isatty():
        return text
    return f"\033[{sgr}m{text}\033[0m"
