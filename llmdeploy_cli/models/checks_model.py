"""Checks of the model's files and of the variables that keep the engine offline (doctor and
preflight, through models/catalog.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.capabilities import HF_OFFLINE
from llmdeploy_cli.errors import Problem
from llmdeploy_cli.models import facts

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Plan
    from llmdeploy_cli.models.inspect import ModelInfo
    from llmdeploy_cli.profile import Profile


# -- model files ---------------------------------------------------------------------------


def check_model(
    profile: Profile, plan: Plan | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, ModelInfo | None, list[Problem]]:
    """The model's files, found where the engine will look for them: a local path as it is;
    a hub id in the one cache the engine reads (its hub, hub.cache_dir as build() hands it,
    the cache variables of the profile's env and of this environment); a pull name in the
    store the engine's server uses. Without a plan, every cache on disk counts.
    Returns (the folder, its inspection when complete, the verdicts)."""
    from llmdeploy_cli.models.cache import find_local
    from llmdeploy_cli.models.completeness import model_dir_problems

    backend = facts.backend_of(profile)
    need_gguf = facts.needs_gguf(backend)
    local = profile.model_path()
    found_at: list[Problem] = []
    if local is None:
        if plan is not None and backend is not None:
            local, found_at = _located(profile, backend, plan, environ or {})
            if local is None or found_at[0].level != "pass":
                return local, None, found_at
        else:
            local = find_local(profile.model.source, profile)
            if local is None:
                return None, None, [_not_cached(profile, backend, None)]
    problems = model_dir_problems(local, need_gguf=need_gguf)
    if profile.model.tokenizer:  # the tokenizer comes from elsewhere
        problems = [p for p in problems if p.check != "model.tokenizer"]
    if any(p.level == "fail" for p in problems):
        return local, None, problems
    from llmdeploy_cli.models.inspect import inspect_model, model_config

    info: ModelInfo | None = None
    try:
        info = inspect_model(local)
        params = f"{info.params:,} params" if info.params else "params unknown"
        what = f"{info.architecture or info.model_type or info.format}, {params}, {info.dtype}"
        data = {k: v for k, v in info.as_dict().items() if k not in ("files",) and v is not None}
    except OSError:
        what, data = "complete", {}
    cfg = model_config(local, info) if local.is_dir() else None
    extra = problems + _remote_code(profile, cfg)
    return (
        local,
        info,
        [
            Problem("model.files", "pass", f"{local}: complete ({what})", data=data),
            *found_at,
            *extra,
        ],
    )


def _located(profile: Profile, backend, plan: Plan, environ) -> tuple[Path | None, list[Problem]]:
    """model.source (not a local path) looked up where the engine looks (models/cache.py)."""
    from llmdeploy_cli.models.cache import engine_environ, locate_for_engine

    env = engine_environ(profile, backend, plan, environ)
    loc = locate_for_engine(profile, backend, env, dict(plan.server.command.env), environ)
    if loc.path is not None:
        return loc.path, [
            Problem(
                "model.cache",
                "pass",
                f"'{profile.model.source}' is where {facts.display_name(backend)} looks: "
                f"{loc.where}",
                data={"path": str(loc.path)},
            )
        ]
    return loc.elsewhere, [_not_cached(profile, backend, loc)]


def _not_cached(profile: Profile, backend, loc) -> Problem:
    """model.source is not where the engine looks: what it will do (download, or fail
    offline), where a copy it will not see lies, and the way to hand it that copy."""
    source = profile.model.source
    level = "fail" if profile.offline else "warn"
    name = facts.display_name(backend) if backend is not None else profile.backend
    where = f": {loc.where}" if loc is not None and loc.where else ""
    registry = backend is not None and facts.downloads_itself(backend)
    if loc is not None and loc.elsewhere is not None:
        hub = facts.hub_vars(backend)
        if registry:
            fix = (
                f"point the server at that store (hub.cache_dir: {loc.elsewhere.parent.parent}, "
                f"which sets {hub.cache_env if hub else 'its store variable'}), or pull it again"
            )
        else:
            fix = (
                f"set model.source: {loc.elsewhere} (serve then hands {name} that folder), "
                "or download it where the engine looks: llmctl pull PROFILE"
            )
        return Problem(
            "model.files",
            level,
            f"'{source}' is in {loc.elsewhere_what} ({loc.elsewhere}), but {name} does not "
            f"look there; it reads {loc.where or 'another cache'}"
            + ("; offline: true forbids downloading it" if profile.offline else ""),
            fix=fix,
            data={"elsewhere": str(loc.elsewhere), "looked": loc.looked if loc else []},
        )
    if registry:
        return Problem(
            "model.files",
            level,
            f"'{source}' is not in {name}'s model store{where}",
            fix="serve pulls it when online; offline, copy the store from a machine that "
            f"has it ({backend.name} pull there) or point model.source at a .gguf file",
        )
    return Problem(
        "model.files",
        level,
        f"'{source}' is not where {name} looks for it{where or ' (no local cache has it)'}"
        + ("; offline: true forbids downloading it" if profile.offline else ""),
        fix=(
            "on a machine with network: llmctl pull PROFILE, llmctl pack PROFILE "
            "-o model.tar; here: llmctl unpack model.tar --to DIR"
            if profile.offline
            else "the engine downloads it at first start; to fetch it now: llmctl pull PROFILE"
        ),
        data={"looked": loc.looked} if loc is not None else None,
    )


def check_writes(profile: Profile, backend, plan: Plan, environ) -> list[Problem]:
    """The folders the engine must write can be written: its own store (declared
    HubVars.store_default, moved by cache_env: OLLAMA_MODELS, XINFERENCE_HOME) always, and
    the hub cache it downloads into when the model is a hub id and the profile is online."""
    from llmdeploy_cli.models.cache import engine_environ, looks_like_hub_id, writable

    if not profile.server.managed:
        return []
    hub = facts.hub_vars(backend)
    if hub is None:
        return []
    env = engine_environ(profile, backend, plan, environ)
    folders: list[tuple[Path, str]] = []
    if hub.store_default:
        value = env.get(hub.cache_env) if hub.cache_env else None
        folders.append(
            (Path(os.path.expanduser(value or hub.store_default)), hub.cache_env or "its store")
        )
    source = profile.model.source
    if (
        profile.model_path() is None
        and not profile.offline
        and not facts.downloads_itself(backend)
        and looks_like_hub_id(source)
    ):
        folder, var = hub.cache_for(profile.hub.source).folder(env)
        folders.append((Path(folder), f"the download cache ({var})"))
    out: list[Problem] = []
    for folder, what in folders:
        why = writable(folder)
        if why is None:
            out.append(Problem("writes", "pass", f"{folder} ({what}) can be written"))
        else:
            out.append(
                Problem(
                    "writes",
                    "fail",
                    f"{facts.display_name(backend)} must write {what}: {why}",
                    fix="fix the folder's owner or permissions, or point "
                    + (f"{what.split(' ')[0]}" if what.isupper() else "hub.cache_dir")
                    + " at a folder this user can write (in the profile's env)",
                    data={"folder": str(folder)},
                )
            )
    return out


def _remote_code(profile: Profile, cfg: dict | None) -> list[Problem]:
    """A config (the model's config.json) whose classes live in the repository's own Python
    files needs trust_remote_code."""
    if isinstance(cfg, dict) and cfg.get("auto_map") and not profile.model.trust_remote_code:
        return [
            Problem(
                "model.remote_code",
                "warn",
                "config.json maps its classes to the repository's own code (auto_map), and "
                "model.trust_remote_code is false",
                fix="set model.trust_remote_code: true if the engine has no built-in support "
                "for this architecture (read the code first)",
            )
        ]
    return []


# -- offline variables ---------------------------------------------------------------------


def offline_requirements(profile: Profile) -> dict[str, str]:
    """The variables (and values) this profile's engine needs to stay off the network: the
    backend's declared hub variables (capabilities.HubVars), as its build() sets them."""
    hub = facts.hub_vars(facts.backend_of(profile))
    need: dict[str, str] = {}
    if hub is not None:
        need = hub.required(source=profile.hub.source, offline=True, endpoint=profile.hub.endpoint)
    if profile.hub.endpoint and "HF_ENDPOINT" not in need:
        need["HF_ENDPOINT"] = profile.hub.endpoint  # base_env sets it for every engine
    return need


def _same(name: str, have: str, want: str) -> bool:
    if name in HF_OFFLINE:  # huggingface_hub reads 1/ON/YES/TRUE as true
        return have.strip().upper() in ("1", "ON", "YES", "TRUE")
    if want.strip().lower() == "true":  # the *_USE_MODELSCOPE switches
        return have.strip().lower() == "true"
    return have.rstrip("/") == want.rstrip("/")


def check_offline(profile: Profile, plan: Plan, environ: Mapping[str, str]) -> list[Problem]:
    need = offline_requirements(profile)
    engine_env = {**environ, **plan.server.command.env}
    backend = facts.backend_of(profile)
    if facts.needs_gguf(backend) and not need:
        return [Problem("offline.env", "pass", f"{profile.backend} loads local GGUF files")]
    if not profile.offline:
        hub = facts.hub_vars(backend)
        offline_only = set(hub.offline) if hub is not None else set(HF_OFFLINE)
        wrong = [
            k
            for k, v in need.items()
            if k not in offline_only and not _same(k, engine_env.get(k, ""), v)
        ]
        out = [
            Problem(
                "offline.env",
                "pass",
                "offline: false: the engine may reach the model hub (set offline: true on an "
                "air-gapped machine)",
            )
        ]
        for k in wrong:
            out.append(
                Problem(
                    f"offline.env.{k}",
                    "warn",
                    f"{k} is {engine_env.get(k)!r} for the engine; the profile needs {need[k]!r}",
                    fix=f"set env.{k}: {need[k]!r} in the profile",
                )
            )
        return out
    out = []
    for k, v in need.items():
        have = engine_env.get(k)
        origin = "profile" if k in plan.server.command.env else "environment"
        if have is not None and _same(k, str(have), v):
            out.append(Problem(f"offline.env.{k}", "pass", f"{k}={have} ({origin})"))
        else:
            out.append(
                Problem(
                    f"offline.env.{k}",
                    "fail",
                    f"{k} is {'unset' if have is None else repr(str(have))}; the engine needs "
                    f"{k}={v} to stay offline",
                    fix=f"set env.{k}: {v!r} in the profile (offline: true sets the "
                    "Hugging Face ones)",
                )
            )
    return out


def offline_source_warning(
    profile: Profile, plan: Plan | None = None, environ: Mapping[str, str] | None = None
) -> list[Problem]:
    """serve's reminder: offline, a model.source that is not a local folder must be where
    the engine looks (with the plan: looked up there, and silent when it is)."""
    if not profile.offline or profile.model_path() is not None:
        return []
    backend = facts.backend_of(profile)
    where = ""
    if plan is not None and backend is not None:
        from llmdeploy_cli.models.cache import engine_environ, locate_for_engine

        env = engine_environ(profile, backend, plan, environ or {})
        loc = locate_for_engine(profile, backend, env, dict(plan.server.command.env), environ)
        if loc.path is not None:
            return []
        if loc.elsewhere is not None:
            where = f" (a copy is in {loc.elsewhere_what}: {loc.elsewhere}, not read there)"
        if loc.where:
            where = f"; it looks in {loc.where}" + where
    return [
        Problem(
            "offline",
            "warn",
            f"offline: true and model.source '{profile.model.source}' is not a local "
            f"folder: the engine must find it in its cache{where}",
            "download it first (llmctl pull PROFILE) or point model.source at a folder",
        )
    ]
