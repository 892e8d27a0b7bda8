"""What an engine install reports (Event) and how it fails (InstallError): shared by the
package installer (install.py) and the release-archive one (archive.py)."""

from __future__ import annotations

from dataclasses import dataclass

from llmdeploy_cli.errors import ExitCode, LlmctlError


class InstallError(LlmctlError):
    code = ExitCode.RUNTIME
    kind = "install"


@dataclass(frozen=True)
class Event:
    kind: str  # "step", "output", "warning", "done"
    message: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message}
