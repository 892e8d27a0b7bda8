"""`llmctl backends`: which engine plugins exist and which engines are installed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmdeploy_cli.cli.output import emit_json, out


def register(app: typer.Typer) -> None:
    app.command("backends")(backends)


def backends(
    profile: Annotated[
        Path | None,
        typer.Option("--profile", help="Look for the engine where this profile's runtime points."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    flag_spec: Annotated[
        str | None,
        typer.Option(
            "--flag-spec",
            metavar="NAME",
            help="Print the JSON that flag_snapshot.py reads backend NAME's parser with.",
        ),
    ] = None,
) -> int:
    """List backend plugins, their package, and the engine version found (without running it)."""
    from llmdeploy_cli import registry
    from llmdeploy_cli.backend_info import describe_all

    if flag_spec is not None:
        return _print_flag_spec(flag_spec)

    prof = None
    if profile is not None:
        from llmdeploy_cli.profile import load_profile

        prof = load_profile(profile)
    rows = describe_all(prof)
    if json_:
        emit_json({"backends": rows})
        return 0
    width = max((len(r["name"]) for r in rows), default=8)
    out(f"{'BACKEND':<{width}}  ENGINE")
    for r in rows:
        if r.get("error"):
            out(f"{r['name']:<{width}}  plugin broken: {r['error']}")
            continue
        out(f"{r['name']:<{width}}  {_engine_text(r)}")
        if r.get("engine_installs"):
            out(f"{'':<{width}}  installed by llmctl: {', '.join(r['engine_installs'])}")
        out(f"{'':<{width}}  {r['summary']} [plugin from {r['package']}]")
    del registry
    return 0


def _engine_text(r: dict) -> str:
    if r["installed"]:
        return f"{r['engine_version']} at {r['executable_path']}"
    if r["executable_path"] is None:
        where = f"{r['executable']} not found on PATH or where the profile's runtime points"
    else:
        where = f"{r['executable_path']} has no {r['name']} package"
    return f"not installed ({where}); renders for {r['engine_version']}"


def _print_flag_spec(name: str) -> int:
    import json

    from llmdeploy_cli import registry
    from llmdeploy_cli.capabilities import supported
    from llmdeploy_cli.errors import UsageError

    source = registry.get(name).capability("flag_source")
    if not supported(source):
        raise UsageError(
            f"backend '{name}' has no CLI parser llmctl can read (flag_source: NOT_SUPPORTED)",
            hint="its flags are not checked; see docs/writing-a-backend.md",
        )
    out(json.dumps(source.as_spec(name), sort_keys=True))
    return 0
