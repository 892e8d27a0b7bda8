"""Checks of the engine and the server: installed, its flags, the port, a run already going,
the keys the profile names (doctor and preflight, through models/catalog.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from llmdeploy_cli.capabilities import supported
from llmdeploy_cli.errors import Problem

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Backend, Plan
    from llmdeploy_cli.profile import Profile


# -- engine --------------------------------------------------------------------------------


def install_fix(backend: Backend) -> str:
    """How to install the engine: `llmctl engine install NAME` where the backend declares a
    recipe, else its install_hint."""
    if supported(backend.install):
        return f"llmctl engine install {backend.name} (a profile with no runtime section finds it)"
    return backend.install_hint or "install the engine, or set runtime.executable"


def check_engine(backend: Backend, profile: Profile) -> list[Problem]:
    from llmdeploy_cli.engine_env import describe_env, detect_version, find_executable

    if not profile.server.managed:
        return [Problem("engine.installed", "skip", "server.managed: false: not started here")]
    exe = find_executable(backend, profile)
    if exe is None:
        return [
            Problem(
                "engine.installed",
                "fail",
                f"{profile.runtime.executable or backend.executable} not found"
                + (
                    f" in {profile.runtime.venv or profile.runtime.conda_env}"
                    if profile.runtime.venv or profile.runtime.conda_env
                    else " on PATH"
                ),
                fix=install_fix(backend),
            )
        ]
    v = detect_version(backend, profile)
    level = "warn" if v.source == "newest-known" else "pass"
    message = f"{backend.name} {v.version} (from {v.source.split(':', 1)[0]})"
    fix = v.warning and "set runtime.engine_version or runtime.venv to pin it"
    oldest = too_old(backend, v.version) if v.source != "newest-known" else None
    if oldest:
        level = "fail"
        message += f": llmctl renders for {backend.name} {oldest} or later"
        fix = f"upgrade {backend.distribution or backend.name} to {oldest} or later" + (
            f" (llmctl engine install {backend.name})" if supported(backend.install) else ""
        )
    return [
        Problem(
            "engine.installed",
            "pass",
            f"{exe} (environment: {describe_env(backend, profile)})",
            data={"path": exe, "environment": describe_env(backend, profile)},
        ),
        Problem(
            "engine.version",
            level,
            message,
            fix=fix,
            data={"version": v.version, "source": v.source, "min_version": oldest or None},
        ),
    ]


def too_old(backend: Backend, version: str) -> str | None:
    """The backend's declared minimum (Backend.min_version) when `version` is older."""
    from llmdeploy_cli.distinfo import version_tuple

    oldest = getattr(backend, "min_version", None)
    if not oldest or not version_tuple(version):
        return None
    return oldest if version_tuple(version) < version_tuple(oldest) else None


def check_engine_flags(backend: Backend, profile: Profile, plan: Plan) -> Problem:
    """Every rendered flag is an exact option of the engine's parser (llmdeploy_cli.flagcheck):
    the installed engine's own parser when its version was read from its environment, else
    llmctl's committed snapshot of the version rendered for."""
    from llmdeploy_cli.errors import PreflightError
    from llmdeploy_cli.flagcheck import check_resolved
    from llmdeploy_cli.resolve import Resolved, state_dir

    try:
        report = check_resolved(Resolved(profile, backend, plan), state_dir())
    except PreflightError as e:
        return Problem("engine.flags", "warn", e.message, fix=e.hint)
    if not report.checked:
        return Problem(
            "engine.flags",
            "skip",
            f"flags not checked: {report.source}",
            fix="install the engine where runtime points, or pin runtime.engine_version",
        )
    bad = [p for p in report.problems if p.level == "fail"]
    if bad:
        return Problem(
            "engine.flags",
            "fail",
            f"{len(bad)} rendered flag(s) rejected by {report.source}: "
            + "; ".join(p.message for p in bad[:3]),
            fix="fix the profile key or extra_args entry that produced them",
        )
    forwarded = [p for p in report.problems if p.level == "warn"]
    if forwarded:
        return Problem(
            "engine.flags",
            "warn",
            "; ".join(p.message for p in forwarded[:3]),
            fix="check these keys against the model's own parameters",
        )
    return Problem("engine.flags", "pass", f"every flag is exact for {report.source}")


def check_executable(backend: Backend, profile: Profile) -> list[Problem]:
    """serve's check: the engine's executable is there (doctor's engine.installed says more)."""
    from llmdeploy_cli.engine_env import find_executable

    if not profile.server.managed or find_executable(backend, profile) is not None:
        return []
    exe = profile.runtime.executable or backend.executable
    if supported(backend.install):
        fix = install_fix(backend)
    else:
        fix = (
            f"install it into its own environment: {backend.install_hint}"
            if backend.install_hint
            else f"install {backend.name} and put {exe} on PATH"
        )
        fix += " (then set runtime.venv / runtime.executable, or put it on PATH)"
    return [
        Problem(
            "executable",
            "fail",
            f"{backend.name}: executable '{exe}' not found"
            + (" in the profile's runtime env" if profile.runtime.venv else " on PATH"),
            fix,
        )
    ]


# -- the server ----------------------------------------------------------------------------


def check_running(profile: Profile) -> list[Problem]:
    """The profile is not already being served (its run lock, or a live recorded run)."""
    from llmdeploy_cli.supervise import state

    st = state.load(profile.name)
    if st is not None:
        state.clean_stale(st)
        st = state.load(profile.name)
    if state.is_locked(profile.name) or (st is not None and state.liveness(st) == "running"):
        where = f" at {st.base_url}" if st else ""
        return [
            Problem(
                "running",
                "fail",
                f"'{profile.name}' is already being served{where}",
                f"use it, or stop it first: llmctl stop {profile.name}",
            )
        ]
    return []


def check_port(profile: Profile, plan: Plan) -> list[Problem]:
    """The port the engine will bind is free (else who holds it)."""
    from llmdeploy_cli.netutil import port_in_use

    port = port_of(plan.endpoint.base_url)
    if not profile.server.managed:
        return [Problem("port", "skip", f"server.managed: false: port {port} is someone else's")]
    auto = profile.server.port == "auto"
    if port is None:
        return [Problem("port", "pass", "port: auto picks a free port at start")] if auto else []
    host = profile.server.host
    bind = host.strip("[]") or "0.0.0.0"  # the address the engine will bind
    try:
        taken = port_in_use(bind, port)
    except OSError as e:
        return [_bind_failure(host, port, e)]
    if taken:
        from llmdeploy_cli.supervise.diagnose import port_holder

        holder = port_holder(port)
        return [
            Problem(
                "port",
                "fail",
                f"port {port} is already in use"
                + (f" by {holder}" if holder else " (by a process you cannot see)"),
                "stop that process, or set server.port to a free port (or `port: auto`)",
                data={"port": port, "holder": holder},
            )
        ]
    if auto:
        return [Problem("port", "pass", "port: auto picks a free port at start")]
    return [Problem("port", "pass", f"{host}:{port} is free")]


def _bind_failure(host: str, port: int, e: OSError) -> Problem:
    """The engine could not bind host:port either: say why, and the key that fixes it."""
    import errno

    why = e.strerror or str(e)
    if e.errno == errno.EADDRNOTAVAIL:
        message = f"server.host {host} is not an address of this machine ({why})"
        fix = "set server.host to one of this machine's addresses (127.0.0.1, 0.0.0.0 for all)"
    elif e.errno == errno.EACCES:
        message = f"cannot bind {host}:{port}: {why} (ports below 1024 need privileges)"
        fix = "set server.port to 1024 or above (or `port: auto`)"
    else:
        message = f"cannot bind {host}:{port}: {why}"
        fix = "check server.host is an address (or a name) of this machine"
    return Problem(
        "port", "fail", message, fix, data={"host": host, "port": port, "errno": e.errno}
    )


def port_of(url: str) -> int | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).port
    except ValueError:
        return None


# -- keys the profile names ----------------------------------------------------------------


def check_keys(profile: Profile, environ: Mapping[str, str]) -> list[Problem]:
    """The variables the profile names for the API key and the hub token are set."""
    found: list[Problem] = []
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
