"""`llmctl doctor`: every check a profile needs before it is served, each with its fix.

No network: model files are looked up on disk (find_local), the engine through its
environment's files, the GPU through NVML or nvidia-smi, the port with a local bind.
Each check is a Problem with level pass, warn, fail or skip; any fail makes doctor exit 3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import Problem

if TYPE_CHECKING:  # pragma: no cover
    pass


@dataclass
class DoctorReport:
    profile: str
    backend: str
    checks: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.level == "fail" for c in self.checks)

    def as_dict(self) -> dict:
        counts: dict[str, int] = {}
        for c in self.checks:
            counts[c.level] = counts.get(c.level, 0) + 1
        return {
            "profile": self.profile,
            "backend": self.backend,
            "ok": self.ok,
            "counts": counts,
            "checks": [c.as_dict() for c in self.checks],
        }


def run_doctor(
    path: str | Path,
    *,
    verify: bool = False,
    environ: Mapping[str, str] | None = None,
    gpu_query=None,
) -> DoctorReport:
    """Every check of the catalog (models/catalog.py) for one profile file. Raises
    ProfileError for an invalid profile."""
    from llmdeploy_cli.models.catalog import CheckContext, Mode, run_checks
    from llmdeploy_cli.resolve import resolve

    environ = os.environ if environ is None else environ
    r = resolve(path, environ)
    report = DoctorReport(r.profile.name, r.profile.backend)
    ctx = CheckContext(
        Mode.DOCTOR, r.profile, r.backend, r.plan, environ, gpu_query=gpu_query, verify=verify
    )
    report.checks = run_checks(ctx)
    return report


__all__ = ["DoctorReport", "run_doctor"]
