"""The fixes plan and doctor may name: only the remedies the profile's backend declares
(llmdeploy_cli/capabilities.py `Remedies`), and only those its validation accepts for this
profile (a key the backend refuses, or a value it refuses, is never suggested)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmdeploy_cli.capabilities import NO_REMEDIES, Remedies, Remedy

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.profile import Profile


def remedies_of(backend: Any) -> Remedies:
    """The backend's declared remedies; none when it declares none (or is not registered)."""
    got = getattr(backend, "remedies", None)
    return got if isinstance(got, Remedies) else NO_REMEDIES


def remedies_for(engine: str) -> Remedies:
    from llmdeploy_cli.errors import LlmctlError
    from llmdeploy_cli.registry import get

    try:
        return remedies_of(get(engine))
    except LlmctlError:
        return NO_REMEDIES


def suggestion(remedy: Remedy, value: Any = None, why: str | None = None, **extra) -> dict:
    """A plan suggestion from a declared remedy: {"key", "value", "why"} (+ extra)."""
    out = {
        "key": remedy.key,
        "value": remedy.value if value is None else value,
        "why": why or remedy.why,
    }
    out.update(extra)
    return out


def with_key(profile: Profile, key: str, value: Any) -> Profile:
    """A copy of the profile with one dotted key (resources.X, model.X, options.X) set."""
    from llmdeploy_cli.profile import Profile as _Profile

    data = profile.model_dump(exclude_unset=True)
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    copy = _Profile.model_validate(data)
    copy._path = profile.path
    return copy


def accepted(profile: Profile, key: str, value: Any, version: str | None = None) -> bool:
    """Would `llmctl validate` take the profile with this key set to this value?"""
    from llmdeploy_cli.errors import LlmctlError
    from llmdeploy_cli.registry import get

    try:
        backend = get(profile.backend)
        changed = with_key(profile, key, value)
        backend.options(changed)
        return not backend.check(changed, version or backend.newest_known)
    except (LlmctlError, ValueError):
        return False


def keep_accepted(profile: Profile, suggestions: list[dict], version: str | None = None) -> list:
    """The suggestions validate takes for this profile, in order."""
    return [s for s in suggestions if accepted(profile, s["key"], s["value"], version)]


__all__ = ["accepted", "keep_accepted", "remedies_for", "remedies_of", "suggestion", "with_key"]
