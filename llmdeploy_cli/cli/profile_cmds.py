"""`llmctl init`, `llmctl validate`, `llmctl render`: static work on profiles (docs/design.md §9).

None of these touch the network or the model files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from llmdeploy_cli.cli.output import emit_json, error_text, info, out, warn
from llmdeploy_cli.errors import ExitCode, LlmctlError, ProfileError, UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("validate")(validate)
    app.command("render")(render)


def validate(
    files: Annotated[list[Path], typer.Argument(help="Profile files to check.")],
    json_: JsonOpt = False,
) -> int:
    """Check profiles: schema, backend options, keys the engine cannot honour. Static."""
    from llmdeploy_cli.resolve import resolve

    results = []
    for f in files:
        try:
            r = resolve(f, decide_device=False)
        except ProfileError as e:
            results.append({"file": str(f), "ok": False, "issues": [i.as_dict() for i in e.issues]})
            if not json_:
                for issue in e.issues:
                    error_text(str(issue) if issue.file else f"{f}: {issue}")
            continue
        except LlmctlError as e:
            results.append({"file": str(f), "ok": False, "issues": [{"message": e.message}]})
            if not json_:
                error_text(f"{f}: {e.message}", e.hint)
            continue
        results.append(
            {
                "file": str(f),
                "ok": True,
                "name": r.profile.name,
                "backend": r.profile.backend,
                "warnings": r.plan.warnings,
            }
        )
        if not json_:
            for w in r.plan.warnings:
                warn(f"{f}: {w}")
            url = r.plan.endpoint.base_url
            if r.profile.server.port == "auto":  # the port is chosen when serve starts
                url = re.sub(r":\d+/", ":<auto>/", url, count=1)
            out(f"ok  {f}  ({r.profile.name}: {r.profile.backend} -> {url})")
    ok = all(r["ok"] for r in results)
    if json_:
        emit_json({"ok": ok, "files": results})
    return 0 if ok else int(ExitCode.USAGE)


def render(
    file: Annotated[Path, typer.Argument(help="Profile file.")],
    json_: JsonOpt = False,
    check_flags: Annotated[
        bool,
        typer.Option(
            "--check-flags",
            help="Check every flag against the engine's real parser (the installed engine, "
            "else llmctl's snapshot of that version).",
        ),
    ] = False,
) -> int:
    """Show the exact engine command of every step, the environment llmctl sets, generated
    files and the endpoint. Secrets are shown as ***."""
    from llmdeploy_cli.resolve import resolve

    r = resolve(file, decide_device=False)
    plan = r.plan
    report = _check_flags(r) if check_flags else None
    from llmdeploy_cli.engine_env import describe_env

    environment = describe_env(r.backend, r.profile) if r.profile.server.managed else None
    if json_:
        doc = {"name": r.profile.name, "backend": r.profile.backend, **plan.as_dict()}
        doc["environment"] = environment  # where the engine comes from (docs/engines.md)
        _raise_on_bad_flags(report)  # a failure prints the error envelope instead
        if report is not None:
            doc["flags"] = report.as_dict()
        emit_json(doc)
        return 0
    for w in plan.warnings:
        warn(w)
    if environment and not any("environment:" in w for w in plan.warnings):
        info(f"{r.backend.name}: environment: {environment}")
    if r.profile.server.port == "auto":
        from urllib.parse import urlsplit

        shown = urlsplit(plan.endpoint.base_url).port
        warn(f"port: auto: shown with port {shown}, free now; serve picks its own when it starts")
    for step in plan.steps:
        via = f"  (run through the {step.via})" if step.via else ""
        out(f"# {step.name} [{step.kind}]{via}")
        for k, v in step.command.display_env().items():
            out(f"#   env {k}={v}")
        out(_multiline(step.command.display_argv()))
        out()
    for f in plan.files:
        out(f"# file {f.path}")
        out(f.content.rstrip("\n"))
        out()
    ep = plan.endpoint
    out(f"# endpoint {ep.base_url}  model={ep.model}")
    if report is not None:
        for p in report.problems:
            (warn if p.level == "warn" else error_text)(f"{p.step}: {p.message}")
        if not report.failed:
            info(f"flags checked against {report.source}: all exact")
    _raise_on_bad_flags(report)
    return 0


def _check_flags(resolved):
    from llmdeploy_cli.errors import PreflightError
    from llmdeploy_cli.flagcheck import check_resolved
    from llmdeploy_cli.resolve import state_dir

    report = check_resolved(resolved, state_dir(), progress=_say)
    if not report.checked:
        raise PreflightError(
            f"cannot check flags: {report.source}",
            hint="install the engine where the profile's runtime points, or set "
            "runtime.engine_version to a version llmctl has a snapshot of",
        )
    return report


def _say(text: str) -> None:
    """Progress of a long step, on stderr (plain: render imports no Rich for it)."""
    import sys

    sys.stderr.write(f"render: {text}\n")
    sys.stderr.flush()


def _raise_on_bad_flags(report) -> None:
    from llmdeploy_cli.errors import UsageError

    if report is None or not report.failed:
        return
    bad = [p for p in report.problems if p.level == "fail"]
    raise UsageError(
        f"{len(bad)} rendered flag(s) are not accepted by {report.source}: {bad[0].message}",
        hint="fix the profile key or extra_args entry that produced it",
        details=[p.as_dict() for p in bad],
    )


def _multiline(argv: list[str]) -> str:
    """argv as a copy-pasteable shell command, one flag (with its value) per line."""
    import shlex

    lines, cur = [], [argv[0]]
    for a in argv[1:]:
        if a.startswith("-") and len(cur) > 0 and (len(lines) > 0 or len(cur) > 1):
            lines.append(cur)
            cur = []
        cur.append(a)
    lines.append(cur)
    return " \\\n    ".join(shlex.join(part) for part in lines)


def init(
    backend: Annotated[str, typer.Option("--backend", "-b", help="Engine plugin name.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Local path or hub id.")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Profile name.")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite -o FILE.")] = False,
) -> int:
    """Write a commented starter profile that validates."""
    from llmdeploy_cli import registry
    from llmdeploy_cli.engines.store import for_profile
    from llmdeploy_cli.starter import starter_profile

    be = registry.get(backend)
    local = Path(model).expanduser()
    if local.exists():
        # the profile reads a relative path from its own folder: write where it is
        model = str(local.resolve())
    # an install `llmctl engine install` made: the profile names it (newest, this machine's
    # device first); none: the engine is looked up on PATH
    found = for_profile(be.name, be.executable)
    if found is None and hasattr(be.install, "executable") and be.install.executable:
        found = for_profile(be.name, be.install.executable)
    ref = f"engine:{found.name}@{found.version}" if found is not None else None
    text = starter_profile(be, model, name=name, port=port, engine_ref=ref)
    if output is None:
        out(text.rstrip("\n"))
        return 0
    if output.exists() and not force:
        raise UsageError(f"{output} already exists", hint="pass --force to overwrite it")
    from llmdeploy_cli.fsutil import atomic_write

    atomic_write(output, text)
    info(f"wrote {output}; next: llmctl render {output}")
    return 0


__all__ = ["register", "ExitCode"]
