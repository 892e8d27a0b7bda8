"""From a profile file to a checked Plan: the one path every command takes.

load -> schema -> backend lookup -> backend options and key support -> version -> build.
Every problem found on the way is collected, so `validate` reports them all at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmdeploy_cli import registry
from llmdeploy_cli.backend import Backend, Plan, RenderContext
from llmdeploy_cli.engine_env import EngineVersion, describe_env, detect_version, installed_env
from llmdeploy_cli.errors import ProfileError, ProfileIssue
from llmdeploy_cli.netutil import free_port
from llmdeploy_cli.paths import state_dir  # noqa: F401  (re-exported: callers import it here)
from llmdeploy_cli.profile import Profile, load_profile


@dataclass(frozen=True)
class Resolved:
    profile: Profile
    backend: Backend
    plan: Plan


def resolve(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    engine_version: str | None = None,
    decide_device: bool = True,
) -> Resolved:
    """Load, validate and render one profile. Raises ProfileError with every issue found.

    `decide_device`: `resources.device: auto` becomes the device the engine runs on
    (llmdeploy_cli/device.py): for the commands that run or check the engine; render and
    validate pass False and stay static."""
    environ = os.environ if environ is None else environ
    profile = load_profile(path, environ)
    return resolve_profile(
        profile, environ, port=port, engine_version=engine_version, decide_device=decide_device
    )


def resolve_profile(
    profile: Profile,
    environ: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    engine_version: str | None = None,
    decide_device: bool = False,
) -> Resolved:
    """`engine_version` skips detection (golden tests and version matrices pin it);
    `decide_device`: see resolve()."""
    environ = os.environ if environ is None else environ
    try:
        backend = registry.get(profile.backend)
    except registry.UnknownBackend as e:
        raise ProfileError([e.issue(profile)]) from None

    issues: list[ProfileIssue] = []
    try:
        backend.options(profile)
    except ProfileError as e:
        issues.extend(e.issues)
    if engine_version is not None:
        version = EngineVersion(engine_version, "pinned")
    else:
        version = detect_version(backend, profile)
    issues.extend(backend.check(profile, version.version))
    if issues:
        raise ProfileError(issues)
    decision = None
    if decide_device and profile.resources.device == "auto":
        from llmdeploy_cli import device

        decision = device.decide(profile, backend, engine_version=version.version, environ=environ)
        if decision is not None:
            profile = device.decided(profile, decision, backend)

    if port is None and profile.server.port == "auto":
        port = free_port(profile.server.host if profile.server.host != "0.0.0.0" else "127.0.0.1")
    ctx = RenderContext(
        engine_version=version.version,
        version_source=version.source,
        environ=environ,
        state_dir=str(state_dir()),
        port=port,
    )
    plan = backend.build(profile, ctx)
    if version.warning:
        plan.warnings.insert(0, version.warning)
    if decision is not None:
        plan.warnings.insert(0, decision.line(backend.name))
    if profile.server.managed and installed_env(profile, backend) is not None:
        # the profile names no runtime: say which install it runs (docs/engines.md)
        plan.warnings.insert(
            0, f"{backend.name}: environment: {describe_env(backend, profile)} (no runtime set)"
        )
    return Resolved(profile, backend, plan)


def resolve_served(path: str | Path, environ: Mapping[str, str] | None = None) -> Resolved:
    """Resolve a profile the way its running server was: `port: auto` takes the port the
    server got (from its run state). Used by commands that talk to a served profile
    (smoke, bench)."""
    from llmdeploy_cli.errors import UnreachableError

    environ = os.environ if environ is None else environ
    profile = load_profile(path, environ)
    if profile.server.port != "auto":
        return resolve_profile(profile, environ)
    from llmdeploy_cli.supervise import state

    rec = state.load(profile.name)
    if rec is None or rec.port is None or state.liveness(rec) != "running":
        raise UnreachableError(
            f"{path}: the profile uses 'port: auto' and no running server "
            f"'{profile.name}' was found",
            hint=f"start it with 'llmctl serve {path} --detach', or pass --url",
        )
    return resolve_profile(profile, environ, port=rec.port)
