"""The capability contract every backend plugin keeps (docs/writing-a-backend.md).

`contract_problems(name)` lists what backend NAME gets wrong: a capability left UNDECLARED,
one of the wrong type, or declared hub variables its build() does not set. Used by
test_capabilities.py for every registered backend, and by the plugin test inside the
subprocess where the third-party plugin is installed.
"""

from __future__ import annotations

import textwrap

from llmdeploy_cli import registry
from llmdeploy_cli.capabilities import (
    NAMES,
    NOT_SUPPORTED,
    UNDECLARED,
    ContainerSpec,
    FlagSource,
    HubVars,
    ModelFormat,
    Recipe,
    Task,
    routes,
    supported,
)
from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.memory_rules import MemoryRule
from llmdeploy_cli.profile import profile_from_data
from llmdeploy_cli.resolve import resolve_profile
from llmdeploy_cli.yamlfile import SourceMap

# One model source per format, to render a profile any backend accepts.
SOURCES = {
    ModelFormat.HF_FOLDER: "org/tiny-model",
    ModelFormat.GGUF: "/models/tiny.gguf",
    ModelFormat.REGISTRY_NAME: "tiny",
}
ENVIRON = {"HOME": "/home/user"}


def _of_type(value, kind, allow_not_supported: bool = True) -> bool:
    return isinstance(value, kind) or (allow_not_supported and value is NOT_SUPPORTED)


def declaration_problems(backend) -> list[str]:
    name = backend.name
    out = [f"{name}: {cap} is UNDECLARED" for cap in NAMES if getattr(backend, cap) is UNDECLARED]
    if out:
        return out
    formats, tasks = backend.model_formats, backend.tasks
    if not (
        formats is NOT_SUPPORTED
        or (
            isinstance(formats, frozenset)
            and formats
            and all(isinstance(f, ModelFormat) for f in formats)
        )
    ):
        out.append(f"{name}: model_formats must be a non-empty frozenset of ModelFormat")
    if not (
        tasks is NOT_SUPPORTED
        or (isinstance(tasks, frozenset) and tasks and all(isinstance(t, Task) for t in tasks))
    ):
        out.append(f"{name}: tasks must be a non-empty frozenset of Task")
    elif supported(tasks) and not routes(tasks):
        out.append(f"{name}: its tasks map to no route")
    if not isinstance(backend.runs_on_cpu, bool):
        out.append(f"{name}: runs_on_cpu must be True or False")
    checks = (
        ("container", ContainerSpec, True),
        ("install", Recipe, True),
        ("hub", HubVars, False),
        ("flag_source", FlagSource, True),
        ("memory", MemoryRule, True),
    )
    for cap, kind, may_lack in checks:
        if not _of_type(getattr(backend, cap), kind, may_lack):
            lack = " or NOT_SUPPORTED" if may_lack else ""
            out.append(f"{name}: {cap} must be a {kind.__name__}{lack}")
    recipe = backend.install
    if isinstance(recipe, Recipe):
        if not recipe.devices or not set(recipe.devices) <= {"cpu", "cuda"}:
            out.append(f"{name}: install.devices must be cpu and/or cuda")
        if ("cpu" in recipe.devices) != bool(backend.runs_on_cpu):
            out.append(f"{name}: install.devices and runs_on_cpu disagree about the CPU")
        # whose version the env's dist-info gives: the backend's, or the recipe's own (the
        # wheel of one runtime: xllamacpp); a release archive (Ollama) has none
        if not (backend.distribution or recipe.distribution or recipe.archive):
            out.append(f"{name}: an install recipe needs the backend's distribution")
    container, hub = backend.container, backend.hub
    if isinstance(container, ContainerSpec) and isinstance(hub, HubVars):
        if container.cache_env != hub.cache_env:
            out.append(f"{name}: container.cache_env and hub.cache_env disagree")
    return out


def _render(name: str, formats, extra: dict):
    """The server env of the first model source the backend accepts, or None."""
    order = formats if supported(formats) else [ModelFormat.REGISTRY_NAME]
    for fmt in sorted(order, key=lambda f: f.value):
        data = {"name": "contract", "backend": name, "model": {"source": SOURCES[fmt]}, **extra}
        try:
            profile = profile_from_data(data, SourceMap("<contract>"))
            backend = registry.get(name)
            r = resolve_profile(profile, ENVIRON, engine_version=backend.newest_known)
        except ProfileError:
            continue
        return dict(r.plan.server.command.env)
    return None


def hub_problems(name: str) -> list[str]:
    """Declared hub variables against what build() sets (the single source of both)."""
    backend = registry.get(name)
    hub, out = backend.hub, []
    env = _render(name, backend.model_formats, {"offline": True})
    if env is None:
        return [f"{name}: no minimal offline profile renders (tried {list(SOURCES.values())})"]
    for k, v in hub.required(source="huggingface", offline=True, endpoint=None).items():
        if env.get(k) != v:
            out.append(f"{name}: offline, hub declares {k}={v} but build() sets {env.get(k)!r}")
    if supported(hub.modelscope) or hub.source_env:
        env = _render(name, backend.model_formats, {"hub": {"source": "modelscope"}})
        if env is None:
            out.append(
                f"{name}: hub declares ModelScope support, but hub.source: modelscope is refused"
            )
        else:
            for k, v in hub.required(source="modelscope", offline=False, endpoint=None).items():
                if env.get(k) != v:
                    out.append(
                        f"{name}: modelscope, hub declares {k}={v}, build() sets {env.get(k)!r}"
                    )
    if hub.endpoint_env:
        url = "https://mirror.example"
        env = _render(name, backend.model_formats, {"hub": {"endpoint": url}})
        if env is None:
            out.append(f"{name}: hub declares {hub.endpoint_env}, but hub.endpoint is refused")
        elif env.get(hub.endpoint_env) != url:
            out.append(f"{name}: hub.endpoint does not reach {hub.endpoint_env}")
    return out


def contract_problems(name: str) -> list[str]:
    problems = declaration_problems(registry.get(name))
    return problems or hub_problems(name)


def describe(name: str) -> str:
    """One line per capability, for a failure message."""
    backend = registry.get(name)
    return textwrap.indent("\n".join(f"{cap} = {getattr(backend, cap)!r}" for cap in NAMES), "    ")
