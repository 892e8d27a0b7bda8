"""`llmctl gateway serve|validate|reload`: one OpenAI endpoint for many profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmdeploy_cli.cli.output import emit_json, error_text, out, warn
from llmdeploy_cli.errors import ExitCode, ProfileError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]

gateway_app = typer.Typer(
    help="One OpenAI-compatible address for many profiles: start on demand, unload idle "
    "models, evict by the memory plan.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


@gateway_app.command("validate")
def validate_cmd(
    file: Annotated[Path, typer.Argument(help="The gateway file.")],
    json_: JsonOpt = False,
) -> int:
    """Check the gateway file and every profile; show each model's memory need."""
    from llmdeploy_cli.gateway.config import load_gateway
    from llmdeploy_cli.gateway.report import analyse

    try:
        rep = analyse(load_gateway(file))
    except ProfileError as e:
        if json_:
            emit_json({"ok": False, "file": str(file), "issues": [i.as_dict() for i in e.issues]})
        else:
            for issue in e.issues:
                error_text(str(issue) if issue.file else f"{file}: {issue}")
        return int(ExitCode.USAGE)
    if json_:
        emit_json({"ok": True, **rep})
        return 0
    for w in rep["warnings"] + rep["notes"]:
        warn(w)
    auth = "key required" if rep["auth"] else "no key"
    out(f"ok  {file}  (gateway {rep['name']} on {rep['listen']}, {auth})")
    out("devices: " + ", ".join(f"{d} {_gib(b)}" for d, b in rep["devices"].items()))
    for m in rep["models"]:
        names = ", ".join([m["served_name"], *m["aliases"]])
        need = ", ".join(f"{_gib(b)} on {d}" for d, b in m["need"].items()) or "not counted"
        flags = [k for k in ("pin", "preload") if m[k]]
        ttl = "never unloaded" if m["ttl"] == 0 or m["pin"] else f"ttl {m['ttl']:g} s"
        out(
            f"  {m['name']} ({m['backend']}) as {names}: needs {need} [{m['need_source']}]; "
            f"fits alone; {ttl}" + (f"; {', '.join(flags)}" if flags else "")
        )
        if m.get("note"):
            out(f"    {m['note']}")
    out("resident together:")
    for group in rep["together"]:
        out("  " + " + ".join(group))
    return 0
