"""`llmctl serve`, `status`, `logs`, `stop`, `wait`: running a profile and watching it.

Data (the ready line, status, JSON) goes to stdout; progress, the engine's live output and
failures go to stderr. Exit codes as docs/design.md §9; a server stopped by Ctrl-C, SIGTERM or
SIGHUP exits 130 / 143 / 129 once its whole process group is gone.

This module parses and renders: serving is `supervise.serve.serve` (one library call for
foreground, --detach and managed: false, following docs/serve.md's failure table), whose
events are drawn here; this module installs the stop signals and passes their flag in.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from llmdeploy_cli.cli.output import emit_json, err_console, info, out, warn
from llmdeploy_cli.errors import LlmctlError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("stop")(stop)
    app.command("wait")(wait)


def _stop_signals():
    """SIGINT, SIGTERM and SIGHUP (a closed terminal, a hung-up ssh session) set a stop flag
    (the run stops its group gracefully, then exits 128 + the signal) instead of killing."""
    from llmdeploy_cli.supervise.stopflag import on_signals

    return on_signals(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Progress:
    """A Rich status line on a terminal; plain lines (one per change) in CI logs. Shown
    from `start()` on, so the warnings before the start come first."""

    def __init__(self, text: str):
        c = err_console()
        self._live = c.status(text, spinner="dots") if c.is_terminal else None
        self._last = None
        self._text = text
        self._started = False

    def update(self, text: str) -> None:
        if self._live is not None:
            self._live.update(text)
            return
        from rich.text import Text

        plain = Text.from_markup(text).plain
        if plain != self._last:
            self._last = plain
            info(_esc(plain))

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self._live is not None:
            self._live.start()
        else:
            self.update(self._text)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()


def _print_failure(e: LlmctlError, *, tail: bool) -> None:
    lines = getattr(e, "log_tail", None) or []
    c = err_console()
    if tail and lines:
        c.print("[dim]── last lines of the engine log ──[/dim]")
        for line in lines:
            c.print(line, markup=False, highlight=False)
    path = getattr(e, "log_path", None)
    if path:
        c.print(f"[dim]log: {path}[/dim]")


def _say_ready(doc: dict, json_: bool, foreground: bool) -> None:
    if json_:
        emit_json(doc)
        return
    out(f"ready  {doc['name']}  {doc['base_url']}  model={doc['model']}")
    sys.stdout.flush()  # a script reading our stdout learns it now, not at exit
    if foreground:
        info("[dim]serving; Ctrl-C stops it[/dim]")
    elif doc["pid"] is None:
        info(f"[dim]not run by llmctl (managed: false); llmctl stop {doc['name']} forgets it[/dim]")
    else:
        info(
            f"[dim]supervisor pid {doc['pid']}; llmctl logs {doc['name']} -f; "
            f"llmctl stop {doc['name']}[/dim]"
        )


STEP_TEXT = {
    "port": "starting the engine (waiting for its port)",
    "health": "loading (port open, waiting for health)",
    "model": "loading (waiting for the model to be listed)",
    "completion": "warming up (first completion)",
    "after_ready": "after-ready steps",
}


def serve(
    file: Annotated[Path, typer.Argument(help="Profile file.")],
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once ready; a supervisor keeps it.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Fail (exit 4) if not ready within S seconds."),
    ] = None,
    json_: JsonOpt = False,
    no_smoke: Annotated[
        bool, typer.Option("--no-smoke", help="Skip the smoke prompt once ready.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Serve even when the memory plan says the profile cannot fit."
        ),
    ] = False,
) -> int:
    """Start the engine of a profile, wait until it really answers, smoke it, and keep it
    running (foreground: until Ctrl-C / SIGTERM / SIGHUP; --detach: under a supervisor)."""
    from llmdeploy_cli.resolve import resolve
    from llmdeploy_cli.supervise.serve import DETACH, FOREGROUND
    from llmdeploy_cli.supervise.serve import serve as serve_run

    r = resolve(file)
    name, managed = r.profile.name, r.profile.server.managed
    mode = DETACH if detach else FOREGROUND
    first = "starting the supervisor" if detach and managed else "starting"
    status = _Progress(f"{name}: {first}")
    c = err_console()

    def on_event(ev) -> None:
        if ev.kind == "warning":
            warn(ev.message)
            return
        status.start()  # once: after the plan's and the preflight's warnings
        if ev.kind == "step":
            status.update(
                f"{name}: {STEP_TEXT.get(ev.message, ev.message)}  [dim]{ev.elapsed:.1f} s[/]"
            )
        elif ev.kind == "progress":
            status.update(f"{name}: {ev.message}")
        elif ev.kind == "output":
            c.print(ev.message, markup=False, highlight=False, soft_wrap=True)
        elif ev.kind == "restart":
            warn(ev.message)
        elif ev.kind == "ready":
            status.stop()
            if not no_smoke:
                info(f"{name}: ready in {ev.elapsed:.1f} s; smoke ...")
        elif ev.kind == "smoke":
            info(ev.data.summary())
        elif ev.kind == "serving":
            doc, decision = ev.data, r.profile.device_decision
            if decision is not None:  # resources.device: auto (llmdeploy_cli/device.py)
                doc = {**doc, "device_decision": decision.as_dict()}
            _say_ready(doc, json_, foreground=not detach)
        elif ev.kind == "stopped":
            status.stop()
            info(f"{name}: stopped" + (f" ({ev.message})" if ev.message else ""))

    with _stop_signals() as flag:
        try:
            done = serve_run(
                r,
                mode,
                on_event,
                profile_path=file,
                stop=flag,
                timeout=timeout,
                smoke=not no_smoke,
                force=force,
                echo_output=not detach and managed,
            )
        except LlmctlError as e:
            status.stop()
            # The engine's output was shown live in the foreground; after --detach, its tail.
            _print_failure(e, tail=detach and managed)
            raise
        finally:
            status.stop()
    return done.exit_code


def status(
    name: Annotated[str | None, typer.Argument(help="Run name (default: all).")] = None,
    json_: JsonOpt = False,
) -> int:
    """Show served profiles: phase, pids, endpoint, restarts, log. Cleans stale records."""
    from llmdeploy_cli.supervise import control

    rows = [(st, live) for st, live in control.runs() if name is None or st.name == name]
    if name is not None and not rows:
        raise LlmctlError(f"no server named '{name}' is running", hint="see llmctl status")
    docs = []
    for st, live in rows:
        d = st.public()
        d["state"] = live
        docs.append(d)
    if json_:
        emit_json({"runs": docs})
    elif not docs:
        info("no servers running")
    else:
        for d in docs:
            phase = d["phase"] if d["state"] == "running" else d["state"]
            out(
                f"{d['name']:<20} {phase:<9} {d['base_url']:<32} model={d['model']}  "
                f"pid={d['pid']} engine={d['engine_pid']} restarts={d['restarts']} "
                f"up={_dur(d['uptime_s'])}"
            )
            trouble = d.get("storage_error")
            if trouble and d["state"] == "running":
                if trouble.get("recovered"):
                    info(f"  [dim]{_esc(trouble['what'])}: could not be written for a while[/dim]")
                else:
                    info(f"  [yellow]warning: {_esc(trouble['message'])}[/yellow]")
            if (d.get("error") and d["state"] != "running") or d["phase"] == "backoff":
                err = d.get("error") or {}
                info(f"  [red]{_esc(err.get('message', ''))}[/red]")
                if err.get("hint"):
                    info(f"  [dim]hint: {_esc(err['hint'])}[/dim]")
    if name is not None and rows and rows[0][1] != "running":
        return 1
    return 0


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _dur(s: float) -> str:
    s = int(s)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def logs(
    name: Annotated[str, typer.Argument(help="Run name.")],
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    n: Annotated[int, typer.Option("-n", "--lines", help="How many last lines.")] = 50,
) -> int:
    """Print the engine log of a run (kept after it stops); -f follows it until it ends."""
    from llmdeploy_cli.supervise import state as st_mod
    from llmdeploy_cli.supervise.logfile import follow as follow_log
    from llmdeploy_cli.supervise.logfile import read_tail

    path = st_mod.log_path(name)
    if not path.exists():
        raise LlmctlError(f"no log for '{name}'", hint="see llmctl status")
    for line in read_tail(path, n):
        out(line)
    sys.stdout.flush()
    if not follow:
        return 0

    def ended() -> bool:
        st = st_mod.load(name)
        return st is None or st_mod.liveness(st) != "running"

    with _stop_signals() as ev:
        for line in follow_log(path, stop=lambda: ev.is_set() or ended()):
            out(line)
            sys.stdout.flush()
    return 0


def stop(
    name: Annotated[str | None, typer.Argument(help="Run name.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every run.")] = False,
    json_: JsonOpt = False,
) -> int:
    """Stop a run: its supervisor stops the engine's whole process group (SIGTERM, SIGKILL
    after the grace period). Stopping a run that has already ended is not an error; a name
    llmctl has never served is (exit 2, with the names it may have meant)."""
    from llmdeploy_cli.errors import UsageError
    from llmdeploy_cli.supervise import control
    from llmdeploy_cli.supervise import state as st_mod

    if (name is None) == (not all_):
        raise UsageError("give a NAME or --all", hint="see llmctl status")
    names = st_mod.names() if all_ else [name]
    # a gateway's models go with their gateway (their supervisor is the gateway process)
    names = [n for n in names if st_mod.SEP not in n or n.split(st_mod.SEP)[0] not in names]
    if name and st_mod.SEP in name:  # NAME/PROFILE: unload one model of gateway NAME
        from llmdeploy_cli.gateway.control import unload

        results = [unload(*name.split(st_mod.SEP, 1))]
    else:
        if name is not None and st_mod.load(name) is None:
            _gateway_model_or_refuse(name)
            _known_or_refuse(name)
        results = [control.stop_run(n) for n in names]
    if json_:
        emit_json({"stopped": results})
    else:
        for r in results:
            if r["stopped"]:
                note = f" ({r['note']})" if r.get("note") else ""
                info(f"{r['name']}: stopped in {r['seconds']:.2f} s{note}")
            else:
                info(f"{r['name']}: not running")
    return 0


def _gateway_model_or_refuse(name: str) -> None:
    """`stop GATEWAY.PROFILE` (the old spelling of a gateway's model) would read as a run
    of its own: refuse it with the right spelling rather than guess."""
    from llmdeploy_cli.errors import UsageError
    from llmdeploy_cli.supervise import control
    from llmdeploy_cli.supervise import state as st_mod

    gateways = [st.name for st, live in control.runs() if st.backend == "gateway"]
    models = [f"{g}{st_mod.SEP}{name[len(g) + 1 :]}" for g in gateways if name.startswith(g + ".")]
    for other in models + control.known_names():
        gw, sep, profile = other.partition(st_mod.SEP)
        if sep and name == f"{gw}.{profile}":
            raise UsageError(
                f"no run is named '{name}'; gateway '{gw}' serves '{other}'",
                hint=f"llmctl stop {other} unloads that model; llmctl stop {gw} stops the gateway",
            )


def _known_or_refuse(name: str) -> None:
    """`stop NAME` of a name llmctl never served here (no record, no log) is a typo, not a
    stopped run: say so, with the names it may have meant and the names running."""
    from llmdeploy_cli.errors import UsageError
    from llmdeploy_cli.supervise import control

    known = control.known_names()
    if name in known:
        return
    running = [st.name for st, live in control.runs() if live == "running"]
    near = control.similar_names(name, known)
    parts = []
    if near:
        parts.append("did you mean " + " or ".join(near) + "?")
    parts.append("running: " + (", ".join(running) if running else "none"))
    raise UsageError(f"llmctl has never served a run named '{name}'", hint="; ".join(parts))


def wait(
    name: Annotated[str, typer.Argument(help="Run name.")],
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up (exit 4) after S seconds.")
    ] = None,
    json_: JsonOpt = False,
) -> int:
    """Wait until a run (started elsewhere, maybe not yet) is ready."""
    from llmdeploy_cli.supervise import control
    from llmdeploy_cli.supervise.serve import ready_doc

    st = control.wait_run(name, timeout)
    doc = ready_doc(st.name, st.base_url, st.model, st.supervisor_pid, st.log, st.timings)
    if json_:
        emit_json(doc)
    else:
        out(f"ready  {st.name}  {st.base_url}  model={st.model}")
    return 0
