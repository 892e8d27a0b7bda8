"""What `llmctl backends` reports about each plugin (pure data; the CLI prints it)."""

from __future__ import annotations

from llmdeploy_cli import registry
from llmdeploy_cli.engine_env import detect_version, find_executable
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
                "default_port": be.default_port,
                "options": sorted(f.alias or n for n, f in be.Options.model_fields.items()),
                "supports": sorted(be.supports),
                "install_hint": be.install_hint,
            }
        )
    return rows
