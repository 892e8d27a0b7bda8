"""Shared helpers for the backend tests: a base profile plus extra YAML, rendered pinned to
an engine version."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile


def write_profile(tmp_path: Path, base: str, extra: str = "", model: str = "") -> Path:
    """BASE (ending in `model:`) + extra `model:` keys + extra top-level YAML, as p.yml."""
    model_keys = "".join(f"  {line.strip()}\n" for line in model.splitlines() if line.strip())
    p = tmp_path / "p.yml"
    p.write_text(base.lstrip() + model_keys + textwrap.dedent(extra).lstrip())
    return p


def resolver(tmp_path: Path, base: str, environ: dict, version: str):
    """resolve(extra="", version=VERSION, environ=None, model="") -> Resolved."""
    default_env = environ

    def _resolve(extra: str = "", version: str = version, environ=None, model: str = ""):
        profile = load_profile(write_profile(tmp_path, base, extra, model), default_env)
        env = default_env if environ is None else environ
        return resolve_profile(profile, env, engine_version=version)

    return _resolve


def issues_of(render, *args, **kw) -> list:
    with pytest.raises(ProfileError) as e:
        render(*args, **kw)
    return e.value.issues


def argv_of(plan) -> list[str]:
    return list(plan.server.command.argv)
