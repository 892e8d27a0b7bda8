"""Where an engine lives and which version it is, found without running it (docs/design.md §9).

Order: the distribution's dist-info in the engine's environment (runtime.venv, conda env,
the venv around runtime.executable or the executable on PATH), else the profile's pinned
runtime.engine_version, else the newest version llmctl knows, with a warning.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from llmdeploy_cli.backend import Backend
from llmdeploy_cli.distinfo import dist_version, site_packages, version_tuple
from llmdeploy_cli.profile import Profile


@dataclass(frozen=True)
class EngineVersion:
    version: str
    source: str  # "dist-info:<path>", "profile", "newest-known"
    warning: str | None = None


def env_prefix(profile: Profile) -> Path | None:
    """The environment the profile says holds the engine (venv or conda), if any."""
    rt = profile.runtime
    if rt.venv and rt.venv.startswith("engine:"):
        # an env made by `llmctl engine install` (docs/engines.md)
        from llmdeploy_cli.engines.store import resolve_ref

        return resolve_ref(rt.venv, device=profile.resources.device)
    if rt.venv:
        return Path(os.path.expanduser(rt.venv))
    if rt.conda_env:
        name = os.path.expanduser(rt.conda_env)
        if os.sep in name:
            return Path(name)
        for base in _conda_bases():
            cand = base / "envs" / name
            if cand.is_dir():
                return cand
        return (_conda_bases() or [Path("~/miniconda3").expanduser()])[0] / "envs" / name
    return None


def _conda_bases() -> list[Path]:
    bases = []
    for var in ("CONDA_ROOT", "CONDA_PREFIX_1", "CONDA_PREFIX"):
        if os.environ.get(var):
            p = Path(os.environ[var])
            bases.append(p.parent.parent if p.parent.name == "envs" else p)
    exe = os.environ.get("CONDA_EXE")
    if exe:
        bases.append(Path(exe).parent.parent)
    for guess in ("~/miniconda3", "~/anaconda3", "~/miniforge3", "/opt/conda"):
        bases.append(Path(guess).expanduser())
    return bases


def find_executable(backend: Backend, profile: Profile) -> str | None:
    """Absolute path of the engine executable, or None when it cannot be found."""
    exe = os.path.expanduser(profile.runtime.executable or backend.executable)
    if os.sep in exe:
        return exe if os.access(exe, os.X_OK) else None
    prefix = env_prefix(profile)
    if prefix is not None:
        cand = prefix / "bin" / exe
        return str(cand) if os.access(cand, os.X_OK) else None
    return shutil.which(exe)


def executable_for_argv(backend: Backend, profile: Profile) -> str:
    """argv[0]: the env's executable when the profile names an env, else the bare name."""
    exe = os.path.expanduser(profile.runtime.executable or backend.executable)
    prefix = env_prefix(profile)
    if prefix is not None and os.sep not in exe:
        return str(prefix / "bin" / exe)
    return exe


def detect_version(backend: Backend, profile: Profile) -> EngineVersion:
    dist = backend.distribution
    if dist:
        prefixes: list[Path] = []
        prefix = env_prefix(profile)
        if prefix is not None:
            prefixes.append(prefix)
        else:
            exe = find_executable(backend, profile)
            if exe:
                prefixes.append(Path(os.path.realpath(exe)).parent.parent)
                prefixes.append(Path(exe).parent.parent)
        for pre in prefixes:
            for site in site_packages(pre):
                found = dist_version(site, dist)
                if found:
                    return EngineVersion(found[0], f"dist-info:{found[1]}")
    if profile.runtime.engine_version:
        return EngineVersion(profile.runtime.engine_version, "profile")
    return EngineVersion(
        backend.newest_known,
        "newest-known",
        warning=(
            f"{backend.name}: engine version not found in its environment; rendering for "
            f"{backend.newest_known} (set runtime.engine_version or runtime.venv to pin it)"
        ),
    )


__all__ = [
    "EngineVersion",
    "detect_version",
    "env_prefix",
    "executable_for_argv",
    "find_executable",
    "version_tuple",  # re-exported: backends compare engine versions with it
]
