"""The one catalog of checks that `llmctl doctor` and serve's preflight run.

Each row: the check's name, its function, and who runs it (PREFLIGHT, DOCTOR or BOTH). The
order is the order of the report and of preflight's headline (its first failure): a run
already going, the engine, the port, the model, the GPU, the offline variables, the keys.

Doctor shows every verdict (pass / warn / fail / skip), and a check that breaks becomes a
fail naming the error instead of hiding the others. Preflight keeps only warnings and
failures; a failure is what stops serve (exit 3).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import Problem
from llmdeploy_cli.models import checks_engine, checks_gpu, checks_model

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Backend, Plan
    from llmdeploy_cli.models.inspect import ModelInfo
    from llmdeploy_cli.profile import Profile


class Mode(enum.Enum):
    PREFLIGHT = "preflight"
    DOCTOR = "doctor"


PREFLIGHT = frozenset({Mode.PREFLIGHT})
DOCTOR = frozenset({Mode.DOCTOR})
BOTH = PREFLIGHT | DOCTOR


@dataclass
class CheckContext:
    """What the checks read; `model_dir` (and in doctor `model_info`, the folder inspected
    once) is filled in by model.files for the ones after."""

    mode: Mode
    profile: Profile
    backend: Backend
    plan: Plan
    environ: Mapping[str, str]
    gpu_query: Callable | None = None
    verify: bool = False
    check_running: bool = True
    model_dir: Path | None = None
    model_info: ModelInfo | None = None

    @property
    def doctor(self) -> bool:
        return self.mode is Mode.DOCTOR

    @property
    def managed(self) -> bool:
        return self.profile.server.managed


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[CheckContext], list[Problem]]
    runs: frozenset[Mode]
    stops: bool = False  # a failure ends the run: the other checks would only repeat it
    # Preflight: an error inside the check drops it (an estimate must not block serving).
    best_effort: bool = False


# -- the rows' functions -------------------------------------------------------------------


def _running(ctx: CheckContext) -> list[Problem]:
    return checks_engine.check_running(ctx.profile) if ctx.check_running else []


def _executable(ctx: CheckContext) -> list[Problem]:
    return checks_engine.check_executable(ctx.backend, ctx.profile)


def _engine(ctx: CheckContext) -> list[Problem]:
    return checks_engine.check_engine(ctx.backend, ctx.profile)


def _flags(ctx: CheckContext) -> list[Problem]:
    return [checks_engine.check_engine_flags(ctx.backend, ctx.profile, ctx.plan)]


def _device(ctx: CheckContext) -> list[Problem]:
    # resources.device: auto as resolve() decided it (serve says it in its warning line)
    from llmdeploy_cli.device import check_device

    return check_device(ctx.profile)


def _port(ctx: CheckContext) -> list[Problem]:
    return checks_engine.check_port(ctx.profile, ctx.plan)


def _model(ctx: CheckContext) -> list[Problem]:
    if ctx.doctor:  # the folder, or the hub id / pull name in a local cache, inspected
        ctx.model_dir, ctx.model_info, found = checks_model.check_model(
            ctx.profile, ctx.plan, ctx.environ
        )
        return found
    # serve: a local folder must be complete; a hub id is the engine's to find
    if not ctx.managed:
        return []
    from llmdeploy_cli.models.completeness import model_failures

    ctx.model_dir = ctx.profile.model_path()
    return model_failures(ctx.model_dir, ctx.backend) if ctx.model_dir else []


def _gpu(ctx: CheckContext) -> list[Problem]:
    # serve runs doctor's verdict (no GPU where the engine needs one is a fail there too:
    # the engine would only die of it, with a traceback); a server someone else runs is not
    # ours to check
    if not ctx.doctor and not ctx.managed:
        return []
    return checks_gpu.check_gpu(
        ctx.profile, ctx.model_dir, ctx.plan, ctx.gpu_query, model_info=ctx.model_info
    )


def _context(ctx: CheckContext) -> list[Problem]:
    from llmdeploy_cli.models.checks_context import check_context

    return check_context(ctx.profile, ctx.backend, ctx.model_dir, ctx.environ, ctx.model_info)


def _offline(ctx: CheckContext) -> list[Problem]:
    if ctx.doctor:
        return checks_model.check_offline(ctx.profile, ctx.plan, ctx.environ)
    if not ctx.profile.offline:
        return []
    found = checks_model.check_offline(ctx.profile, ctx.plan, ctx.environ)
    return found + checks_model.offline_source_warning(ctx.profile, ctx.plan, ctx.environ)


def _sampling(ctx: CheckContext) -> list[Problem]:
    from llmdeploy_cli.models.checks_sampling import check_sampling

    return check_sampling(ctx.profile, ctx.backend, ctx.model_dir)


def _writes(ctx: CheckContext) -> list[Problem]:
    found = checks_model.check_writes(ctx.profile, ctx.backend, ctx.plan, ctx.environ)
    return found if ctx.doctor else [p for p in found if p.level != "pass"]


def _keys(ctx: CheckContext) -> list[Problem]:
    return checks_engine.check_keys(ctx.profile, ctx.environ)


def _verify(ctx: CheckContext) -> list[Problem]:
    if not ctx.verify:
        return []
    from llmdeploy_cli.models.verify import verify_model_files

    return verify_model_files(ctx.model_dir)


CATALOG: tuple[Check, ...] = (
    Check("running", _running, PREFLIGHT, stops=True),
    Check("executable", _executable, PREFLIGHT),
    Check("engine.installed", _engine, DOCTOR),
    Check("engine.flags", _flags, DOCTOR),
    Check("device", _device, DOCTOR),
    Check("port", _port, BOTH),
    Check("model.files", _model, BOTH),
    Check("model.context", _context, BOTH),
    Check("gpu", _gpu, BOTH, best_effort=True),
    Check("offline.env", _offline, BOTH),
    Check("writes", _writes, BOTH),
    Check("sampling", _sampling, DOCTOR),
    Check("keys", _keys, PREFLIGHT),
    Check("verify", _verify, DOCTOR),
)


def run_checks(ctx: CheckContext) -> list[Problem]:
    """Every check of the catalog that ctx.mode runs, in order."""
    found: list[Problem] = []
    for check in CATALOG:
        if ctx.mode not in check.runs:
            continue
        got = _run(check, ctx)
        if ctx.mode is Mode.PREFLIGHT:
            got = [p for p in got if p.level in ("fail", "warn")]
        found += got
        if check.stops and any(p.level == "fail" for p in got):
            break
    return found


def _run(check: Check, ctx: CheckContext) -> list[Problem]:
    if ctx.mode is Mode.PREFLIGHT:
        if not check.best_effort:
            return check.run(ctx)
        try:
            return check.run(ctx)
        except Exception:  # noqa: BLE001 - an estimate that breaks must not block serving
            return []
    try:  # doctor: a check that breaks (unreadable file, odd config) is a fail of its own
        return check.run(ctx)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [
            Problem(
                check.name,
                "fail",
                f"the check could not run: {type(e).__name__}: {e}",
                fix="run again with --debug and report it if the cause is not clear",
            )
        ]


__all__ = ["BOTH", "CATALOG", "DOCTOR", "PREFLIGHT", "Check", "CheckContext", "Mode", "run_checks"]
