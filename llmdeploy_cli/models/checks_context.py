"""The context check: resources.max_model_len against the model's own limit, for engines
that refuse a longer one at start (the backend's `context_limit`); the limit is derived the
way vLLM derives it (llmdeploy_cli/models/shape.py `derived_max_len`). Doctor and serve's
preflight run it, so the error comes before the engine is spawned."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.capabilities import ContextLimit
from llmdeploy_cli.errors import Problem

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.models.inspect import ModelInfo
    from llmdeploy_cli.profile import Profile


def check_context(
    profile: Profile,
    backend,
    model_dir: Path | None,
    environ: Mapping[str, str],
    model_info: ModelInfo | None = None,
) -> list[Problem]:
    """`model_info`: model_dir already inspected (its config is not read again)."""
    want = profile.resources.max_model_len
    limit = getattr(backend, "context_limit", None)
    if want is None or not isinstance(limit, ContextLimit) or model_dir is None:
        return []
    cfg_path = model_dir / "config.json" if model_dir.is_dir() else None
    if cfg_path is None or not cfg_path.is_file():
        return []
    from llmdeploy_cli.models.inspect import model_config
    from llmdeploy_cli.models.shape import derived_max_len

    cfg = model_config(model_dir, model_info)
    info = derived_max_len(cfg or {})
    if info is None or want <= info.derived:
        return [] if info is None else [_ok(want, info)]
    if info.model_max_length and want <= info.model_max_length:
        return [_ok(want, info)]
    env = {**environ, **profile.env}
    if limit.override_env and str(env.get(limit.override_env, "")).lower() in ("1", "true"):
        return [
            Problem(
                "model.context",
                "warn",
                f"max_model_len {want} is above the model's {info.derived} ({info.key}); "
                f"{limit.override_env} lets {profile.backend} take it anyway",
            )
        ]
    level = "fail" if limit.refuses else "warn"
    return [
        Problem(
            "model.context",
            level,
            f"max_model_len {want} is above the model's own limit {info.derived} "
            f"({info.key} in config.json)"
            + (f": {profile.backend} refuses it at start" if limit.refuses else ""),
            fix=f"resources.max_model_len: {info.derived} (or less)",
            data={"max_model_len": want, "limit": info.derived, "key": info.key},
        )
    ]


def _ok(want: int, info) -> Problem:
    return Problem(
        "model.context", "pass", f"max_model_len {want} within the model's {info.derived}"
    )
