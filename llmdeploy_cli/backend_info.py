"""What `llmctl backends` reports about each plugin (pure data; the CLI prints it)."""

from __future__ import annotations

from llmdeploy_cli import registry
from llmdeploy_cli.engine_env import describe_env, detect_version, find_executable
from llmdeploy_cli.errors import LlmctlError
from llmdeploy_cli.profile import ModelSpec, Profile


def describe_all(profile: Profile | None = None) -> list[dict]:
    rows = []
    for name in registry.names():
        ep = registry.entry_point(name)
        package = ep.dist.name if ep is not None and ep.dist is not None else "?"
        try:
            be = registry.get(name)
        except LlmctlError as e:
            rows.append({"name": name, "package": package, "error": e.message})
            continue
        prof = (
            profile
            if profile is not None and profile.backend == name
            else Profile(name="probe", backend=name, model=ModelSpec(source="none"))
        )
        version = detect_version(be, prof)
        from llmdeploy_cli.engines.store import installed

        rows.append(
            {
                "name": name,
                "package": package,
                "entry_point": ep.value if ep else None,
                "summary": be.summary,
                "executable": be.executable,
                "executable_path": find_executable(be, prof),
                "engine_version": version.version,
                "version_source": version.source,
                "installed": not version.source.startswith(("newest", "profile")),
                "environment": describe_env(be, prof),
                # every env `llmctl engine install` made for it (a profile with no runtime
                # section uses the newest for its device: docs/engines.md)
                "engine_installs": [e.as_dict()["ref"] for e in installed(name)],
                "default_port": be.default_port,
                "options": sorted(f.alias or n for n, f in be.Options.model_fields.items()),
                "supports": sorted(be.supports),
                "install_hint": be.install_hint,
                "capabilities": describe_capabilities(be),
            }
        )
    return rows


def describe_capabilities(be) -> dict:
    """The backend's declared capabilities as JSON data ("not supported" / "undeclared")."""
    from llmdeploy_cli.capabilities import NAMES, NOT_SUPPORTED, UNDECLARED, routes

    out: dict = {}
    for cap in NAMES:
        value = getattr(be, cap, UNDECLARED)
        if value is UNDECLARED:
            out[cap] = "undeclared"
        elif value is NOT_SUPPORTED:
            out[cap] = "not supported"
        elif cap in ("model_formats", "tasks"):
            out[cap] = sorted(v.value for v in value)
        elif cap == "container":
            out[cap] = {
                "image": value.image_template,
                "cache_path": value.cache_path,
                "cache_env": value.cache_env,
            }
        elif cap == "install":
            out[cap] = {"default_version": value.default_version, "devices": list(value.devices)}
        elif cap == "hub":
            out[cap] = {
                "modelscope": "not supported"
                if value.modelscope is NOT_SUPPORTED
                else dict(value.modelscope),
                "source_env": value.source_env,
                "cache_env": value.cache_env,
            }
        elif cap == "flag_source":
            out[cap] = {"distribution": value.distribution}
        elif cap == "memory":
            describe = getattr(value, "describe", None)
            out[cap] = describe() if callable(describe) else repr(value)
        else:
            out[cap] = value
    if isinstance(out["tasks"], list):
        out["routes"] = list(routes(out["tasks"]))
    return out
