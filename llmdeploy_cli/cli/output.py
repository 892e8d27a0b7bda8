"""How commands print: data to stdout (text or JSON), progress and errors to stderr.

The core never prints; commands call these helpers. Every JSON document carries
`schema_version`; failures under --json print the §9 error envelope on stdout.
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
    err_console().print(f"[yellow]warning:[/yellow] {_escape(text)}")


def error_text(message: str, hint: str | None = None) -> None:
    c = err_console()
    c.print(f"[bold red]error:[/bold red] {_escape(message)}")
    if hint:
        c.print(f"  [dim]hint:[/dim] {_escape(hint)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
