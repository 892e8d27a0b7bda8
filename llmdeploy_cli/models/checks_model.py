"""Checks of the model's files and of the variables that keep the engine offline (doctor and
preflight, through models/catalog.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.capabilities import HF_OFFLINE
from llmdeploy_cli.errors import Problem
from llmdeploy_cli.models import facts

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Plan
    from llmdeploy_cli.profile import Profile


# -- model files ---------------------------------------------------------------------------


def check_model(profile: Profile) -> tuple[Path | None, list[Problem]]:
    from llmdeploy_cli.models.cache import REGISTRY_STORE_DEFAULT, find_local
    from llmdeploy_cli.models.completeness import model_dir_problems
    from llmdeploy_cli.models.inspect import inspect_model

    source = profile.model.source
    backend = facts.backend_of(profile)
    need_gguf = facts.needs_gguf(backend)
    local = profile.model_path()
    if local is None:
        found = find_local(source, profile)
        if found is None:
            if backend is not None and facts.downloads_itself(backend):
                level = "fail" if profile.offline else "warn"
                hub = facts.hub_vars(backend)
                where = f"{hub.cache_env} or " if hub and hub.cache_env else ""
                return None, [
                    Problem(
                        "model.files",
                        level,
                        f"'{source}' is not in {facts.display_name(backend)}'s model store "
                        f"({where}{REGISTRY_STORE_DEFAULT})",
                        fix="serve pulls it when online; offline, copy the store from a "
                        f"machine that has it ({backend.name} pull there) or point "
                        "model.source at a .gguf file",
                    )
                ]
            level = "fail" if profile.offline else "warn"
            return None, [
                Problem(
                    "model.files",
                    level,
                    f"'{source}' is not in any local cache (Hugging Face, ModelScope, "
                    "Xinference, hub.cache_dir)"
                    + ("; offline: true forbids downloading it" if profile.offline else ""),
                    fix=(
                        "on a machine with network: llmctl pull PROFILE, llmctl pack PROFILE "
                        "-o model.tar; here: llmctl unpack model.tar --to DIR"
                        if profile.offline
                        else "the engine downloads it at first start; to fetch it now: "
                        "llmctl pull PROFILE"
                    ),
                )
            ]
        local = found
    problems = model_dir_problems(local, need_gguf=need_gguf)
    if profile.model.tokenizer:  # the tokenizer comes from elsewhere
        problems = [p for p in problems if p.check != "model.tokenizer"]
    if any(p.level == "fail" for p in problems):
        return local, problems
    extra = problems + _remote_code(profile, local)
    try:
        info = inspect_model(local)
        params = f"{info.params:,} params" if info.params else "params unknown"
        what = f"{info.architecture or info.model_type or info.format}, {params}, {info.dtype}"
        data = {k: v for k, v in info.as_dict().items() if k not in ("files",) and v is not None}
    except OSError:
        what, data = "complete", {}
    return local, [Problem("model.files", "pass", f"{local}: complete ({what})", data=data), *extra]


def _remote_code(profile: Profile, local: Path) -> list[Problem]:
    """A config whose classes live in the repository's own Python files needs
    trust_remote_code."""
    cfg_path = local / "config.json" if local.is_dir() else None
    if cfg_path is None or not cfg_path.is_file():
        return []
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
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


def offline_source_warning(profile: Profile) -> list[Problem]:
    """serve's reminder: offline, a model.source that is not a local folder must be cached."""
    if not profile.offline or profile.model_path() is not None:
        return []
    return [
        Problem(
            "offline",
            "warn",
            f"offline: true and model.source '{profile.model.source}' is not a local "
            "folder: the engine must find it in its cache",
            "download it first (llmctl pull PROFILE) or point model.source at a folder",
        )
    ]
