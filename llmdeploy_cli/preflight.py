"""Checks before anything is spawned (docs/serve.md): every problem at once, each with its fix.

The checks are the catalog's (llmdeploy_cli/models/catalog.py, shared with `llmctl doctor`)
that serve runs: the profile not already running · executable found · port free (else who
holds it) · model folder complete · GPU count and memory where a GPU is there · offline
variables set when offline · API key variable set when named. `check(...)` raises
PreflightError (exit 3) listing every failure.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import PreflightError, Problem

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.resolve import Resolved


def problems(
    r: Resolved, *, environ=None, check_running: bool = True, gpu_query=None
) -> list[Problem]:
    """Every warning and failure of the checks serve runs."""
    from llmdeploy_cli.models.catalog import CheckContext, Mode, run_checks

    environ = os.environ if environ is None else environ
    ctx = CheckContext(
        Mode.PREFLIGHT,
        r.profile,
        r.backend,
        r.plan,
        environ,
        gpu_query=gpu_query,
        check_running=check_running,
    )
    return run_checks(ctx)


def check(
    r: Resolved, *, environ=None, check_running: bool = True, force: bool = False
) -> list[Problem]:
    """Raise PreflightError (exit 3) when anything fails; return the warnings.

    `force` (serve --force) turns a memory plan that does not fit into a warning: the
    plan is an estimate, and the engine has the last word.
    """
    found = problems(r, environ=environ, check_running=check_running)
    if force:
        found = [
            Problem(p.check, "warn", p.message + " (--force: serving anyway)", p.fix, p.data)
            if p.level == "fail" and p.check == "gpu.memory"
            else p
            for p in found
        ]
    fails = [p for p in found if p.level == "fail"]
    if fails:
        first = fails[0]
        more = f" (and {len(fails) - 1} more problem(s), listed below)" if len(fails) > 1 else ""
        err = PreflightError(f"preflight: {first.message}{more}", first.fix, details=fails)
        raise err
    return [p for p in found if p.level == "warn"]
