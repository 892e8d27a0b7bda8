"""Where an engine lives and which version it is, found without starting it (docs/design.md §9).

Order: the distribution's dist-info in the engine's environment (runtime.venv, conda env,
the venv around runtime.executable, the env `llmctl engine install` made when the profile
has no runtime section, or the executable on PATH), else the binary's own answer for a
backend that declares how to ask it (`version_argv`: `ollama -v`), else the profile's
pinned runtime.engine_version, else the newest version llmctl knows, with a warning.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


def env_prefix(profile: Profile, backend: Backend | None = None) -> Path | None:
    """The environment that holds the engine (venv or conda), if any: the one the profile
    names, else, when its runtime section is empty, the one `llmctl engine install` made
    for the engine (installed_env)."""
    rt = profile.runtime
    if not (rt.venv or rt.conda_env or rt.executable):
        found = installed_env(profile, backend)
        return found.path if found is not None else None
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


_HOST_INSTALLS = ContextVar("llmctl_host_installs", default=True)


@contextmanager
def without_installed_envs() -> Iterator[None]:
    """Render as if `llmctl engine install` had installed nothing here (export: a container
    runs its image's own executable, never this machine's engines folder)."""
    token = _HOST_INSTALLS.set(False)
    try:
        yield
    finally:
        _HOST_INSTALLS.reset(token)


def for_container() -> bool:
    """True inside without_installed_envs(): the plan is for a container (its image's own
    executables: a backend that would run llmctl's own Python names `python3` instead)."""
    return not _HOST_INSTALLS.get()


def installed_env(profile: Profile, backend: Backend | None = None):
    """The install (engines.store.InstalledEngine) a profile with an empty runtime section
    runs: the newest complete one of its engine that holds the backend's executable, for
    resources.device (cpu/cuda; auto or unset: this machine's device first). None when the
    profile names a runtime, or nothing is installed (PATH is used)."""
    rt = profile.runtime
    if rt.venv or rt.conda_env or rt.executable or not _HOST_INSTALLS.get():
        return None
    from llmdeploy_cli.engines.store import for_profile

    if backend is None:
        from llmdeploy_cli import registry
        from llmdeploy_cli.errors import LlmctlError

        try:
            backend = registry.get(profile.backend)
        except LlmctlError:
            return None
    return for_profile(backend.name, backend.executable, profile.resources.device)


def describe_env(backend: Backend, profile: Profile) -> str:
    """Which environment the engine runs from, in words (render and doctor say it)."""
    rt = profile.runtime
    if rt.venv:
        prefix = env_prefix(profile, backend)
        return f"runtime.venv {rt.venv}" + (f" ({prefix})" if rt.venv != str(prefix) else "")
    if rt.conda_env:
        return f"conda env {env_prefix(profile, backend)}"
    if rt.executable:
        return f"runtime.executable {rt.executable}"
    found = installed_env(profile, backend)
    if found is not None:
        ref = f"engine:{found.name}@{found.version}:{found.device}"
        return f"installed by llmctl engine install ({ref}, {found.path})"
    exe = shutil.which(os.path.expanduser(backend.executable)) if backend.executable else None
    return f"PATH ({exe})" if exe else f"PATH ({backend.executable} not found)"


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
    prefix = env_prefix(profile, backend)
    if prefix is not None:
        cand = prefix / "bin" / exe
        return str(cand) if os.access(cand, os.X_OK) else None
    return shutil.which(exe)


def executable_for_argv(backend: Backend, profile: Profile) -> str:
    """argv[0]: the env's executable when the profile names an env, else the bare name."""
    exe = os.path.expanduser(profile.runtime.executable or backend.executable)
    prefix = env_prefix(profile, backend)
    if prefix is not None and os.sep not in exe:
        return str(prefix / "bin" / exe)
    return exe


def binary_version(backend: Backend, profile: Profile) -> tuple[str, str] | None:
    """(version, executable) from the engine's own binary, for a backend that declares how
    to ask it (`version_argv`, `version_env` set for the call, and `version_from_output(text)`
    to parse the answer): engines without a Python distribution (Ollama: `ollama -v`).
    None when it cannot be read."""
    argv = getattr(backend, "version_argv", None)
    parse = getattr(backend, "version_from_output", None)
    if not argv or parse is None:
        return None
    exe = find_executable(backend, profile)
    if exe is None:
        return None
    import subprocess

    env = {**os.environ, **(getattr(backend, "version_env", None) or {})}
    try:
        proc = subprocess.run(
            [exe, *argv],
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = parse(proc.stdout + "\n" + proc.stderr)
    return (version, exe) if version else None


def detect_version(backend: Backend, profile: Profile) -> EngineVersion:
    dist = backend.distribution
    if dist:
        prefixes: list[Path] = []
        prefix = env_prefix(profile, backend)
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
    found = binary_version(backend, profile)
    if found:
        return EngineVersion(found[0], f"binary:{found[1]}")
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
    "describe_env",
    "for_container",
    "detect_version",
    "env_prefix",
    "installed_env",
    "without_installed_envs",
    "executable_for_argv",
    "find_executable",
    "version_tuple",  # re-exported: backends compare engine versions with it
]
