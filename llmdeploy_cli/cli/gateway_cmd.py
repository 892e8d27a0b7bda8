"""`llmctl gateway serve|validate|reload`: one OpenAI endpoint for many profiles."""

from __future__ import annotations

import os
import sys
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
    if n < 1024**3:
        return f"{n / 1024**2:.0f} MiB"
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


@gateway_app.command("serve")
def serve_cmd(
    file: Annotated[Path, typer.Argument(help="The gateway file.")],
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background; return once listening.")
    ] = False,
    json_: JsonOpt = False,
) -> int:
    """Serve every profile of the gateway file behind one OpenAI-compatible address."""
    from llmdeploy_cli.gateway import control
    from llmdeploy_cli.gateway.config import load_gateway
    from llmdeploy_cli.gateway.report import analyse

    gw = load_gateway(file)
    analyse(gw)  # a model that can never fit is refused before anything starts
    if not detach:

        def on_event(kind: str, msg: str) -> None:
            if kind == "listening":
                if json_:
                    emit_json({"name": gw.name, "url": msg, "pid": os.getpid()})
                else:
                    out(f"ready  {gw.name}  {msg}/v1  ({len(gw.models)} models)")
                sys.stdout.flush()
            elif kind == "warning":
                warn(msg)

        return control.serve_foreground(gw, on_event)
    doc = control.start_detached(gw)
    if json_:
        emit_json(doc)
    else:
        out(f"ready  {gw.name}  {doc['url']}/v1  (pid {doc['pid']}; llmctl stop {gw.name})")
    return 0


@gateway_app.command("reload")
def reload_cmd(
    name: Annotated[str, typer.Argument(help="The gateway's name.")],
    json_: JsonOpt = False,
) -> int:
    """Re-read the running gateway's file: add, remove and restart changed models."""
    from llmdeploy_cli.gateway import control

    doc = control.call(name, "POST", "/llmctl/reload")
    if json_:
        emit_json(doc)
    elif not doc.get("ok"):
        for i in doc.get("issues", []):
            where = ":".join(str(x) for x in (i.get("file"), i.get("line")) if x)
            error_text(f"{where}: {i.get('key') + ': ' if i.get('key') else ''}{i['message']}")
        error_text(doc.get("message", "reload refused"), "the running set is kept")
    else:
        out(
            "reloaded "
            + name
            + "".join(
                f"; {k}: {', '.join(doc[k])}" for k in ("added", "removed", "changed") if doc[k]
            )
        )
    return 0 if doc.get("ok") else int(ExitCode.USAGE)
