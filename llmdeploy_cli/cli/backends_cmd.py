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
) -> int:
    """List backend plugins, their package, and the engine version found (without running it)."""
    from llmdeploy_cli import registry
    from llmdeploy_cli.backend_info import describe_all

    prof = None
    if profile is not None:
        from llmdeploy_cli.profile import load_profile

        prof = load_profile(profile)
    rows = describe_all(prof)
    if json_:
        emit_json({"backends": rows})
        return 0
    width = max((len(r["name"]) for r in rows), default=8)
    for r in rows:
        if r.get("error"):
            out(f"{r['name']:<{width}}  BROKEN  {r['error']}")
            continue
        found = r["executable_path"] or "not found"
        ver = r["engine_version"] if r["version_source"] != "newest-known" else "?"
        out(
            f"{r['name']:<{width}}  {r['package']:<16} engine {ver:<10} "
            f"{r['executable']}: {found}  - {r['summary']}"
        )
    del registry
    return 0
