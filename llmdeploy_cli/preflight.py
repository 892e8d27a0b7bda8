"""Checks before anything is spawned (DESIGN.md §1.3): every problem at once, each with its fix.

executable found · port free (else who holds it) · model folder complete · offline
variables set when offline · API key variable set when named · the profile not already
running. `check(...)` raises PreflightError (exit 3) listing every failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import PreflightError, Problem

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Backend
    from llmdeploy_cli.resolve import Resolved


def model_problems(path: Path, backend: Backend | None = None) -> list[Problem]:
    """Why the model at `path` is incomplete (models/inspect.py; a minimal check without it)."""
    need_gguf = bool(getattr(backend, "needs_gguf", False))
    try:
        from llmdeploy_cli.models.completeness import model_dir_problems
    except ImportError:  # pragma: no cover - only before models/inspect.py landed
        return _minimal_model_problems(path, need_gguf)
    return [p for p in model_dir_problems(path, need_gguf=need_gguf) if p.level == "fail"]


def _minimal_model_problems(path: Path, need_gguf: bool) -> list[Problem]:  # pragma: no cover
    if not path.exists():
        return [Problem("model.files", "fail", f"{path} does not exist", "fix model.source")]
    if need_gguf or path.is_file():
        ok = path.suffix == ".gguf" or any(path.glob("*.gguf"))
        return [] if ok else [Problem("model.gguf", "fail", f"no .gguf file at {path}")]
    missing = [f for f in ("config.json",) if not (path / f).is_file()]
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        missing.append("weights (*.safetensors or *.bin)")
    if missing:
        return [
            Problem(
                "model.files",
                "fail",
                f"{path} lacks {', '.join(missing)}",
                "download the model again, completely",
            )
        ]
    return []


def problems(r: Resolved, *, environ=None, check_running: bool = True) -> list[Problem]:
    environ = os.environ if environ is None else environ
    profile, backend, plan = r.profile, r.backend, r.plan
    found: list[Problem] = []

    if check_running:
        from llmdeploy_cli.supervise import state

        st = state.load(profile.name)
        if st is not None:
            state.clean_stale(st)
            st = state.load(profile.name)
        if state.is_locked(profile.name) or (st is not None and state.liveness(st) == "running"):
            where = f" at {st.base_url}" if st else ""
            found.append(
                Problem(
                    "running",
                    "fail",
                    f"'{profile.name}' is already being served{where}",
                    f"use it, or stop it first: llmctl stop {profile.name}",
                )
            )
            return found  # the other checks would only repeat it (port in use, ...)

    if profile.server.managed:
        from llmdeploy_cli.engine_env import find_executable

        if find_executable(backend, profile) is None:
            exe = profile.runtime.executable or backend.executable
            fix = (
                f"install it into its own environment: {backend.install_hint}"
                if backend.install_hint
                else f"install {backend.name} and put {exe} on PATH"
            )
            fix += " (then set runtime.venv / runtime.executable, or put it on PATH)"
            found.append(
                Problem(
                    "executable",
                    "fail",
                    f"{backend.name}: executable '{exe}' not found"
                    + (" in the profile's runtime env" if profile.runtime.venv else " on PATH"),
                    fix,
                )
            )

        port = _port_of(plan.endpoint.base_url)
        host = profile.server.host
        bind = host.strip("[]") or "0.0.0.0"  # try the address the engine will bind
        if port is not None:
            from llmdeploy_cli.netutil import port_in_use

            try:
                taken = port_in_use(bind, port)
            except OSError:
                taken = False
            if taken:
                from llmdeploy_cli.supervise.diagnose import port_holder

                holder = port_holder(port)
                found.append(
                    Problem(
                        "port",
                        "fail",
                        f"port {port} is already in use"
                        + (f" by {holder}" if holder else " (by a process you cannot see)"),
                        "stop that process, or set server.port to a free port (or `port: auto`)",
                        data={"port": port, "holder": holder},
                    )
                )

        path = profile.model_path()
        if path is not None:
            found.extend(model_problems(path, backend))

        found.extend(_gpu_problems(r, path))

    if profile.offline:
        found.extend(_offline_problems(r, environ))

    if profile.server.api_key_env and not environ.get(profile.server.api_key_env):
        found.append(
            Problem(
                "api_key",
                "fail",
                f"server.api_key_env names {profile.server.api_key_env}, which is not set",
                f"export {profile.server.api_key_env}=... (the key itself never goes in the "
                "profile)",
            )
        )
    if profile.hub.token_env and not environ.get(profile.hub.token_env):
        found.append(
            Problem(
                "hub_token",
                "warn",
                f"hub.token_env names {profile.hub.token_env}, which is not set",
                f"export {profile.hub.token_env}=... if the model is gated",
            )
        )
    return found


def _gpu_problems(r: Resolved, model_dir: Path | None) -> list[Problem]:
    """GPU count and memory against the profile, only where a GPU is there (DESIGN §1.3);
    without one the engine itself says what it needs."""
    if r.profile.resources.device == "cpu":
        return []
    try:
        from llmdeploy_cli.models.doctor import check_gpu
        from llmdeploy_cli.models.gpus import query_gpus

        gpus, why = query_gpus()
        if not gpus:
            return []
        probs = check_gpu(r.profile, model_dir, r.plan, gpu_query=lambda: (gpus, why))
    except Exception:  # noqa: BLE001 - an estimate that breaks must not block serving
        return []
    return [p for p in probs if p.level in ("fail", "warn")]


def _offline_problems(r: Resolved, environ) -> list[Problem]:
    """Every variable the engine needs to stay offline (models/doctor.py), plus a warning
    when the model is not a local folder."""
    profile, plan = r.profile, r.plan
    found: list[Problem] = []
    try:
        from llmdeploy_cli.models.doctor import check_offline

        found += [p for p in check_offline(profile, plan, environ) if p.level in ("fail", "warn")]
    except ImportError:  # pragma: no cover
        env = {**environ, **plan.server.command.env}
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            if env.get(k) != "1":
                found.append(
                    Problem("offline", "fail", f"offline: true but {k} is not set", f"env.{k}: 1")
                )
    if profile.model_path() is None:
        found.append(
            Problem(
                "offline",
                "warn",
                f"offline: true and model.source '{profile.model.source}' is not a local "
                "folder: the engine must find it in its cache",
                "download it first (llmctl pull PROFILE) or point model.source at a folder",
            )
        )
    return found


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


def _port_of(url: str) -> int | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).port
    except ValueError:
        return None
