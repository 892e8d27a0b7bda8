"""What a backend renders: argv lists, the environment llmctl sets, and generated files.

Secrets travel as `Secret` values (a str subclass), so redaction needs no bookkeeping:
anything displayed goes through `display_*`, which prints `***` for every Secret.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

REDACTED = "***"


class Secret(str):
    """A string that must never be printed, logged or written to JSON in clear."""

    def __repr__(self) -> str:
        return "Secret('***')"


def shown(value: str) -> str:
    return REDACTED if isinstance(value, Secret) else value


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def display_argv(self) -> list[str]:
        return [shown(a) for a in self.argv]

    def display_env(self) -> dict[str, str]:
        return {k: shown(v) for k, v in self.env.items()}

    def display(self) -> str:
        """The command as a user would type it, secrets redacted."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.display_env().items())
        cmd = shlex.join(self.display_argv())
        return f"{env} {cmd}" if env else cmd

    def secrets(self) -> set[str]:
        return {v for v in [*self.argv, *self.env.values()] if isinstance(v, Secret) and v}


@dataclass(frozen=True)
class Step:
    """One process or action of a backend's plan.

    kind "server" is the long-running engine; "action" steps run once after it is ready
    (ollama create/pull, xinference launch). `via` says how serve performs an action when it
    does not run the argv itself (e.g. "ollama client library"), so render stays honest.
    """

    name: str
    command: Command
    kind: str = "server"
    via: str | None = None

    def as_dict(self) -> dict:
        d = {
            "name": self.name,
            "kind": self.kind,
            "argv": self.command.display_argv(),
            "env": self.command.display_env(),
            "display": self.command.display(),
        }
        if self.command.cwd:
            d["cwd"] = self.command.cwd
        if self.via:
            d["via"] = self.via
        return d


@dataclass(frozen=True)
class GeneratedFile:
    """A file llmctl writes before running the steps (an Ollama Modelfile, say)."""

    path: str
    content: str

    def as_dict(self) -> dict:
        return {"path": self.path, "content": self.content}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of every secret value in text (logs, engine output)."""
    values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    if not values:
        return text
    pattern = re.compile("|".join(re.escape(v) for v in values))
    return pattern.sub(REDACTED, text)


_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIAL)", re.I)


def looks_secret(env_name: str) -> bool:
    """Environment names whose values we always treat as secrets (HF_TOKEN, *_API_KEY, ...)."""
    return bool(_SECRET_NAME.search(env_name))
