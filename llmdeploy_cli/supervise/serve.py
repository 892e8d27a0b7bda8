"""`serve` as a library call: preflight -> start -> ready -> smoke -> serving, in one of two
modes, with one failure policy (the table in docs/serve.md).

    serve(resolved, FOREGROUND, on_event, stop=flag)   supervise here until `stop` is set
    serve(resolved, DETACH, on_event, stop=flag)       start the detached supervisor, return
                                                       once it is ready and smoked

A profile with `server.managed: false` runs nothing: readiness and the smoke run here, in
either mode (the "unmanaged" row of the table).

The CLI (`llmctl serve`) and the gateway (one call per model, each in its own thread) call
this. It never prints and never installs a signal handler: progress and results arrive as
`ServeEvent`s through `on_event` (called from the calling thread, except `output` lines,
which come from the log reader's thread), a stop is asked for by setting `stop` (a
`StopFlag` that the caller's signal handlers set, or a `threading.Event` set from another
thread), and a failure raises `LlmctlError` (its exit code, hint, `log_tail`, `log_path`).

Embedding note: the engine's parent-death signal (process.py) fires when the *thread* that
spawned it ends, so a caller that serves from threads keeps each session's thread alive
for as long as its engine runs (a FOREGROUND call does: it returns only after the stop).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdeploy_cli.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.resolve import Resolved
    from llmdeploy_cli.supervise.stopflag import StopFlag

FOREGROUND = "foreground"
DETACH = "detach"
MODES = (FOREGROUND, DETACH)

# ServeEvent kinds, in the order a run emits them:
#   warning   a plan or preflight warning (message); while serving, a state or log write
#             that fails (a full disk) or works again
#   step      the readiness rung or supervisor phase in progress (message: its key, e.g.
#             "port", "health", "model", "completion", "after_ready", "starting")
#   progress  an after-ready step of the backend (message: "pulling model 40%")
#   output    one line of the engine's output (FOREGROUND with echo_output only)
#   restart   the engine exited after it was ready and is restarted (message: why, when)
#   ready     the endpoint answers (before the smoke)
#   smoke     the smoke passed (data: the SmokeReport)
#   serving   up and smoked (data: the ready document); FOREGROUND then serves until stop
#   stopped   a stop ended the run, or the run was stopped because its smoke failed
#             (message: why); a failure raises instead
EVENT_KINDS = (
    "warning",
    "step",
    "progress",
    "output",
    "restart",
    "ready",
    "smoke",
    "serving",
    "stopped",
)


@dataclass(frozen=True)
class ServeEvent:
    kind: str
    name: str  # the run's name
    message: str = ""
    elapsed: float = 0.0  # seconds since the start (after the preflight checks)
    data: Any = None


@dataclass
class Served:
    """How a serve call ended without failing."""

    name: str
    mode: str
    managed: bool
    doc: dict | None = None  # the ready document; None when stopped before it was served
    stopped: bool = False  # ended by a stop request
    signum: int | None = None  # the signal that set the stop flag, when one did

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal that stopped it (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
        return 128 + int(self.signum) if self.stopped and self.signum else 0


def serve(
    resolved: Resolved,
    mode: str = FOREGROUND,
    on_event: Callable[[ServeEvent], None] | None = None,
    *,
    profile_path: str | Path | None = None,
    stop: StopFlag | threading.Event | None = None,
    timeout: float | None = None,
    smoke: bool = True,
    preflight: bool = True,
    force: bool = False,
    echo_output: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Served:
    """Serve one resolved profile; see the module docstring and docs/serve.md.

    `profile_path`: the profile file (recorded in the run's state; DETACH re-reads it in
    the supervisor, so it is required there). `timeout`: the first start must be ready
    within it (NotReadyError, exit 4). `smoke`: run the profile's smoke once ready.
    `preflight`: run the preflight checks first (`force` keeps a plan that cannot fit as a
    warning). `echo_output`: emit the engine's output lines as `output` events.
    """
    if mode not in MODES:
        raise UsageError(f"unknown serve mode {mode!r}", hint=f"one of: {', '.join(MODES)}")
    if mode == DETACH and profile_path is None:
        raise UsageError("a detached serve needs the profile file", hint="pass profile_path")
    run = _Run(resolved, mode, on_event, stop, environ)
    for w in resolved.plan.warnings:
        run.emit("warning", w)
    if preflight:
        from llmdeploy_cli import preflight as pf

        for p in pf.check(resolved, force=force):
            run.emit("warning", p.message + (f" ({p.fix})" if p.fix else ""))
    run.t0 = time.monotonic()  # `elapsed` counts the start, not the checks before it
    if not resolved.profile.server.managed:
        return run.unmanaged(profile_path, timeout, smoke)
    if mode == DETACH:
        return run.detached(profile_path, timeout, smoke)
    return run.foreground(profile_path, timeout, smoke, echo_output)


def ready_doc(name, base_url, model, pid, log, timings=None, smoke=None) -> dict:
    """The ready document (`serve --json`, `wait --json`): where it answers, who runs it."""
    doc = {"name": name, "base_url": base_url, "model": model, "pid": pid, "log": log}
    if timings:
        doc["readiness"] = timings
    if smoke is not None:
        doc["smoke"] = smoke.as_dict()
    return doc


class _Run:
    def __init__(self, r, mode, on_event, stop, environ):
        self.r = r
        self.name = r.profile.name
        self.mode = mode
        self.on_event = on_event or (lambda ev: None)
        self.stop = stop if stop is not None else threading.Event()
        self.environ = dict(os.environ if environ is None else environ)
        self.t0 = time.monotonic()

    def emit(self, kind: str, message: str = "", data: Any = None) -> None:
        self.on_event(ServeEvent(kind, self.name, message, time.monotonic() - self.t0, data))

    def result(self, doc: dict | None = None) -> Served:
        stopped = self.stop.is_set()
        return Served(
            self.name,
            self.mode,
            self.r.profile.server.managed,
            doc=None if stopped else doc,
            stopped=stopped,
            signum=getattr(self.stop, "signum", None) if stopped else None,
        )

    def stopped(self, why: str = "") -> Served:
        self.emit("stopped", why)
        return self.result()

    def _session_event(self, kind: str, msg: str) -> None:
        if kind == "step":
            self.emit("step", msg)
        elif kind == "after_ready":
            self.emit("progress", msg)
        elif kind == "restart":
            self.emit("restart", msg)
        elif kind == "storage":  # the state folder failed (or works again) while serving
            self.emit("warning", msg)

    def _smoke(self):
        """The profile's smoke against the ready endpoint (raises SmokeFailed, exit 6)."""
        from llmdeploy_cli.smoke import run_smoke, smoke_routes

        r = self.r
        ep, spec = r.plan.endpoint, r.profile.smoke
        report = run_smoke(
            ep,
            spec,
            api_key=ep.api_key(self.environ),
            timeout=spec.timeout,
            check_listed=None if r.backend.lists_models else False,
            routes=smoke_routes(spec, r.backend.tasks),
        )
        self.emit("smoke", data=report)
        return report

    # -- the modes --------------------------------------------------------------------------
    def foreground(self, profile_path, timeout, smoke: bool, echo_output: bool) -> Served:
        """Supervise in this process until stopped: the engine's group, restarts, the log."""
        from llmdeploy_cli.supervise.session import ServeSession

        served: dict = {}

        def first_ready(sess: ServeSession) -> None:
            self.emit("ready")
            report = None
            if smoke:
                served["smoking"] = True
                report = self._smoke()  # a failure: the Runner stops the group, run() raises
                del served["smoking"]
            if self.stop.is_set():
                return  # stopped while smoking: the Runner stops it next, nothing is served
            served["doc"] = ready_doc(
                self.name,
                sess.endpoint.base_url,
                sess.endpoint.model,
                os.getpid(),
                str(sess.log.path),
                sess.readiness.as_dict() if sess.readiness else None,
                report,
            )
            self.emit("serving", data=served["doc"])

        sess = ServeSession(
            self.r,
            profile_path,
            timeout=timeout,
            stop=self.stop,
            echo=(lambda line: self.emit("output", line)) if echo_output else None,
            on_event=self._session_event,
            on_first_ready=first_ready,
            environ=self.environ,
        )
        try:
            sess.run()
        except BaseException:
            if served.get("smoking"):
                self.emit("stopped", "the smoke failed")
            raise
        return self.stopped() if self.stop.is_set() else self.result(served.get("doc"))

    def detached(self, profile_path, timeout, smoke: bool) -> Served:
        """Start the detached supervisor, wait for it to be ready, smoke it, return."""
        from urllib.parse import urlsplit

        from llmdeploy_cli.supervise import control
        from llmdeploy_cli.supervise.machine import Stopped

        def on_state(st) -> None:
            self.emit("step", st.step or st.phase)

        try:
            st = control.start_detached(
                profile_path,
                self.name,
                port=urlsplit(self.r.plan.endpoint.base_url).port,
                timeout=timeout,
                on_state=on_state,
                stop_requested=self.stop.is_set,
            )
        except Stopped:
            return self.stopped()
        self.emit("ready")
        report = None
        if smoke:
            try:
                report = self._smoke()
            except BaseException:
                control.stop_run(self.name)
                self.emit("stopped", "the smoke failed")
                raise
        if self.stop.is_set():
            control.stop_run(self.name)
            return self.stopped()
        doc = ready_doc(
            self.name, st.base_url, st.model, st.supervisor_pid, st.log, st.timings, report
        )
        self.emit("serving", data=doc)
        return self.result(doc)

    def unmanaged(self, profile_path, timeout, smoke: bool) -> Served:
        """managed: false: someone else runs the server. Readiness, after-ready steps and
        the smoke run here; FOREGROUND then waits for the stop, DETACH returns and the
        record of the ready server stays until `llmctl stop` removes it."""
        from llmdeploy_cli.supervise.session import ServeSession

        detach = self.mode == DETACH
        served: dict = {}

        def first_ready(sess: ServeSession) -> None:
            self.emit("ready")
            report = self._smoke() if smoke else None  # a failure: nothing of ours to stop
            served["doc"] = ready_doc(
                self.name,
                sess.endpoint.base_url,
                sess.endpoint.model,
                None if detach else os.getpid(),
                str(sess.log.path),
                sess.readiness.as_dict() if sess.readiness else None,
                report,
            )
            if not detach and not self.stop.is_set():
                self.emit("serving", data=served["doc"])

        sess = ServeSession(
            self.r,
            profile_path,
            detached=detach,
            timeout=timeout,
            stop=self.stop,
            on_event=self._session_event,
            on_first_ready=first_ready,
            environ=self.environ,
        )
        sess.keep_failed_state = False  # a failed attach leaves no record claiming a server
        sess.run()
        if self.stop.is_set():
            if detach and "doc" in served:
                from llmdeploy_cli.supervise import state as st_mod

                st_mod.remove(self.name)  # stopped while smoking: no record of a served run
            return self.stopped()
        if detach:
            self.emit("serving", data=served["doc"])
        return self.result(served.get("doc"))


__all__ = [
    "DETACH",
    "EVENT_KINDS",
    "FOREGROUND",
    "MODES",
    "ServeEvent",
    "Served",
    "ready_doc",
    "serve",
]
