"""Errors that carry their exit code, so every command fails the same way (docs/cli.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    RUNTIME = 1
    USAGE = 2  # usage error or invalid profile
    PREFLIGHT = 3  # missing engine, files, port in use
    NOT_READY = 4  # not ready in time
    UNREACHABLE = 5  # endpoint unreachable
    ASSERTION = 6  # smoke expectation or bench --fail-if
    REQUESTS_FAILED = 7  # bench ran, and requests of it failed


# What a failed engine adds to its error: envelope key, attribute (serve, docs/serve.md).
ENGINE_KEYS = (
    ("exit_status", "exit_status"),
    ("signal", "signal"),
    ("log", "log_path"),
    ("log_tail", "log_tail"),
)


class LlmctlError(Exception):
    """A failure the user can act on: one line of what is wrong, one line of how to fix it."""

    code: ExitCode = ExitCode.RUNTIME
    kind: str = "runtime"

    def __init__(self, message: str, hint: str | None = None, *, details: list | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []

    def envelope(self) -> dict:
        err = {"code": int(self.code), "kind": self.kind, "message": self.message}
        if self.hint:
            err["hint"] = self.hint
        if self.details:
            err["details"] = [d.as_dict() if hasattr(d, "as_dict") else d for d in self.details]
        # A failed engine (serve): how it ended and where its output is (docs/serve.md).
        for key, attr in ENGINE_KEYS:
            value = getattr(self, attr, None)
            if value not in (None, "", []):
                err[key] = list(value) if key == "log_tail" else value
        return {"error": err}


class UsageError(LlmctlError):
    code = ExitCode.USAGE
    kind = "usage"


@dataclass
class ProfileIssue:
    """One problem in a profile, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None
    loc: tuple = ()
    hint: str | None = None

    @property
    def where(self) -> str:
        parts = [p for p in (self.file, str(self.line) if self.line else None) if p]
        return ":".join(parts)

    @property
    def key(self) -> str:
        return ".".join(str(p) for p in self.loc)

    def __str__(self) -> str:
        head = f"{self.where}: " if self.where else ""
        key = f"{self.key}: " if self.loc else ""
        tail = f" ({self.hint})" if self.hint else ""
        return f"{head}{key}{self.message}{tail}"

    def as_dict(self) -> dict:
        d = {"message": self.message, "file": self.file, "line": self.line, "key": self.key}
        if self.hint:
            d["hint"] = self.hint
        return d


def name_backend(name: str, issues: list[ProfileIssue]) -> list[ProfileIssue]:
    """Every refusal names the backend, as the base check's own messages do."""
    prefix = f"backend '{name}'"
    for issue in issues:
        if prefix not in issue.message:
            issue.message = f"{prefix}: {issue.message}"
    return issues


class ProfileError(UsageError):
    """One or more problems in a profile file (exit 2)."""

    kind = "profile"

    def __init__(self, issues: list[ProfileIssue]):
        self.issues = issues
        first = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"{first}{more}", details=issues)


class PreflightError(LlmctlError):
    code = ExitCode.PREFLIGHT
    kind = "preflight"


class StateDirError(PreflightError):
    """llmctl's state folder cannot be used: full, read-only, not ours, a file in the way
    (exit 3; the message names the folder and the cause, the hint LLMCTL_STATE_DIR)."""

    kind = "state"


class NotReadyError(LlmctlError):
    code = ExitCode.NOT_READY
    kind = "not_ready"


class UnreachableError(LlmctlError):
    code = ExitCode.UNREACHABLE
    kind = "unreachable"


class AssertionFailed(LlmctlError):
    code = ExitCode.ASSERTION
    kind = "assertion"


@dataclass
class Problem:
    """A preflight/doctor finding. `level` is pass, warn or fail."""

    check: str
    level: str
    message: str
    fix: str | None = None
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {"check": self.check, "level": self.level, "message": self.message}
        if self.fix:
            d["fix"] = self.fix
        if self.data:
            d["data"] = self.data
        return d
