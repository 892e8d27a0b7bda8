"""`llmctl engine install|list|remove`: engines in their own virtual environments.

A profile names one with `runtime.venv: engine:NAME[@VERSION][:DEVICE]` (docs/engines.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from llmdeploy_cli.cli.output import emit_json, info, out, warn

PROGRESS_PREFIXES = (
    "Collecting ",
    "Successfully installed",
    "Resolved ",
    "Installed ",
    "Prepared ",
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _engine_names() -> str:
    """Every registered backend's name (entry points only: no backend is imported)."""
    from importlib.metadata import entry_points

    return ", ".join(sorted(ep.name for ep in entry_points(group="llmctl.backends")))


ENGINES = _engine_names()

engine_app = typer.Typer(
    name="engine",
    help="Install engines in their own virtual environments; list and remove them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    app.add_typer(engine_app, name="engine")


@engine_app.command("install")
def install_cmd(
    name: Annotated[str, typer.Argument(help=f"Engine: {ENGINES}.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Engine version (default: the pinned one).")
    ] = None,
    device: Annotated[
        Literal["cpu", "cuda"] | None,
        typer.Option("--device", help="cpu or cuda (default: cuda when nvidia-smi is found)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall if present.")] = False,
    unpinned: Annotated[
        bool,
        typer.Option("--unpinned", help="Install without a committed constraints file."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every installer output line.")
    ] = False,
    json_: JsonOpt = False,
) -> int:
    """Install an engine into llmctl's engines folder: a venv of its own (uv when on PATH,
    else venv + pip) pinned by a committed constraints file, or for Ollama the release
    archive checked against its published sha256. A profile with no runtime section then
    uses it. Progress goes to stderr."""
    from llmdeploy_cli.engines.install import install

    def on_event(e) -> None:
        if e.kind == "step":
            info(f"[bold]engine:[/bold] {_esc(e.message)}")
        elif e.kind == "warning":
            warn(e.message)
        elif e.kind == "done":
            info(f"[green]engine:[/green] {_esc(e.message)}")
        elif e.kind == "output":
            line = e.message.strip()
            if verbose:
                info(f"[dim]  {_esc(line)}[/dim]")
            elif line.startswith(PROGRESS_PREFIXES):
                info(f"[dim]  {_esc(line[:160])}[/dim]")

    res = install(name, version, device, on_event=on_event, force=force, unpinned=unpinned)
    if json_:
        emit_json(
            {
                "path": str(res.path),
                "already_installed": res.already,
                "seconds": round(res.seconds, 1),
                **res.manifest,
            }
        )
    else:
        out(str(res.path))
    return 0


@engine_app.command("list")
def list_cmd(json_: JsonOpt = False) -> int:
    """Show installed engine environments (manifest and the version in their dist-info)."""
    from llmdeploy_cli.engines import catalog, store

    envs = store.installed()
    partial = store.unfinished()
    if json_:
        emit_json(
            {
                "dir": str(store.engines_dir()),
                "engines": [e.as_dict() for e in envs],
                "unfinished": [str(p) for p in partial],
            }
        )
        return 0
    if not envs:
        info(f"no engines installed in {store.engines_dir()} (llmctl engine install NAME)")
        info(f"engines: {', '.join(catalog.installable())}")
    else:
        rows = [("ENGINE", "VERSION", "DEVICE", "INSTALLED", "PYTHON", "INSTALLER", "PATH")]
        for e in envs:
            m = e.manifest
            rows.append(
                (
                    e.name,
                    e.version,
                    e.device,
                    e.dist_version() or "missing",
                    m.get("python") or "?",
                    (m.get("installer") or "?").split(" ")[0],
                    str(e.path),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            out("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
        # the engines with an install recipe (a plugin may declare none: NOT_SUPPORTED)
        missing = sorted(set(catalog.installable()) - {e.name for e in envs})
        if missing:
            info(f"not installed: {', '.join(missing)} (llmctl engine install NAME)")
    for p in partial:
        warn(f"unfinished install (or one still running): {p} (llmctl engine remove to delete)")
    return 0


@engine_app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument(help="Engine name.")],
    version: Annotated[str | None, typer.Option("--version", help="Only this version.")] = None,
    device: Annotated[
        Literal["cpu", "cuda"] | None, typer.Option("--device", help="Only this device.")
    ] = None,
    json_: JsonOpt = False,
) -> int:
    """Delete an engine's environment(s). Without --version, every installed version."""
    from llmdeploy_cli.engines import store
    from llmdeploy_cli.errors import UsageError

    def match(path, doc) -> bool:
        return (
            (doc.get("engine") == name)
            and (version is None or doc.get("version") == version)
            and (device is None or doc.get("device") == device)
        )

    targets = [e.path for e in store.installed(name) if match(e.path, e.manifest)]
    prefix = f"{name}-{version or ''}"
    for p in store.unfinished():
        if p.name.startswith(prefix) and (device is None or p.name.endswith(f"-{device}")):
            targets.append(p)
    if not targets:
        what = name + (f" {version}" if version else "") + (f" ({device})" if device else "")
        raise UsageError(f"no installed engine matches {what}", hint="see llmctl engine list")
    for p in targets:
        store.remove(p)
        if not json_:
            info(f"removed {p}")
    if json_:
        emit_json({"removed": [str(p) for p in targets]})
    return 0


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
