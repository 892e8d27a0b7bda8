"""Backend discovery through the `llmctl.backends` entry-point group.

Built-ins are registered in pyproject.toml exactly as a third-party plugin would be, so
the core never imports a backend module by name.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from llmdeploy_cli.backend import Backend
from llmdeploy_cli.errors import LlmctlError, ProfileIssue

GROUP = "llmctl.backends"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    return sorted(_entry_points())


def entry_point(name: str) -> EntryPoint | None:
    return _entry_points().get(name)


@cache
def get(name: str) -> Backend:
    """The backend plugin called `name` (an instance), or a clear error."""
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownBackend(name)
    try:
        cls = ep.load()
    except Exception as e:  # a broken third-party plugin must not take the CLI down
        raise LlmctlError(
            f"backend plugin '{name}' ({ep.value}) failed to load: {type(e).__name__}: {e}",
            hint="reinstall the package that provides it, or run with --debug",
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise LlmctlError(f"entry point '{name}' ({ep.value}) is not an llmctl Backend class")
    return cls()


class UnknownBackend(LlmctlError):
    def __init__(self, name: str):
        known = names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        super().__init__(
            f"unknown backend '{name}'",
            hint=f"{hint}known backends: {', '.join(known)}",
        )
        self.name = name

    def issue(self, profile) -> ProfileIssue:
        return profile.issue(("backend",), self.message, self.hint)
