"""docs/profiles.md documents every profile key, and nothing that is not one."""

from __future__ import annotations

import re
import typing

from pydantic import BaseModel

from llmdeploy_cli.profile import Profile
from tests.conftest import ROOT


def schema_keys(model: type[BaseModel] = Profile, prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        keys.add(key)
        for arg in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys |= schema_keys(arg, key + ".")
    return keys


def documented_keys() -> set[str]:
    text = (ROOT / "docs" / "profiles.md").read_text()
    # the first cell of every reference-table row: | `model.source` | ...
    rows = re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.M)
    sections = re.findall(r"^## `([a-z_]+)`", text, flags=re.M)
    return set(rows) | set(sections)


def test_every_schema_key_is_documented():
    missing = schema_keys() - documented_keys()
    assert not missing, f"document these keys in docs/profiles.md: {sorted(missing)}"


def test_every_documented_key_exists():
    stale = documented_keys() - schema_keys()
    assert not stale, f"docs/profiles.md documents keys the schema lacks: {sorted(stale)}"
