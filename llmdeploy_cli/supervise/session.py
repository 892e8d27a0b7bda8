"""One serve run: the real Ops behind the state machine, shared by the foreground
`llmctl serve` and the detached supervisor (daemon.py).

spawn (argv list, own process group, log) -> staged readiness -> backend.after_ready ->
READY (the first time: `on_first_ready`, where the CLI runs the smoke) -> wait for an exit
or a stop -> restart policy. Every transition is written to the run's state file.
The core never prints: progress goes to `on_event(kind, message)` and engine output to
the log sink (which may echo it).

The state folder: a serve that cannot write it (full, read-only, a file in the way) fails
before anything starts (StateDirError, exit 3), and so does one whose state cannot be
written before the engine is first ready (a detached serve would wait on a record that
never comes). Once served, a failed write of the state or the log never takes the engine
down: it is recorded (`storage` events, the state's `storage_error`, the log, whichever
can still be written) and retried every STORAGE_RETRY_S seconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import ENGINE_KEYS, LlmctlError, NotReadyError, PreflightError
from llmdeploy_cli.supervise import state as st_mod
from llmdeploy_cli.supervise.machine import EngineExited, Machine, Policy, Runner, Stopped
from llmdeploy_cli.supervise.state import FAILED, READY, STARTING, STOPPED, STOPPING, RunState
from llmdeploy_cli.supervise.stopflag import StopFlag

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.resolve import Resolved
    from llmdeploy_cli.supervise.logfile import LogSink
    from llmdeploy_cli.supervise.process import Child

TAIL_LINES = 25
STORAGE_RETRY_S = 2.0


class ServeSession:
    def __init__(
        self,
        resolved: Resolved,
        profile_path: str | Path | None,
        *,
        detached: bool = False,
        timeout: float | None = None,
        stop: StopFlag | threading.Event | None = None,
        echo: Callable[[str], None] | None = None,
        on_event: Callable[[str, str], None] | None = None,
        on_first_ready: Callable[[ServeSession], None] | None = None,
        environ: dict | None = None,
    ):
        self.r = resolved
        self.profile = resolved.profile
        self.backend = resolved.backend
        self.plan = resolved.plan
        self.endpoint = resolved.plan.endpoint
        self.profile_path = str(Path(profile_path).resolve()) if profile_path else None
        self.detached = detached
        self.timeout = timeout
        self.stop_event = stop or threading.Event()
        self.echo = echo
        self.on_event = on_event or (lambda kind, msg: None)
        self.on_first_ready = on_first_ready
        self.environ = dict(os.environ if environ is None else environ)
        self.stop_plan = self.backend.stop_plan(self.profile)
        self.log: LogSink | None = None
        self.state: RunState | None = None
        self.readiness = None  # readiness.Result of the last start
        self.keep_failed_state = detached
        self._child: Child | None = None
        self._http: tuple | None = None  # (probe client, action client), made once
        self._served = False  # ready once: from then on, state write failures are tolerated
        self._faults: dict[str, str] = {}  # "state" | "log" -> why it cannot be written
        self._retry_at = 0.0

    # -- the whole run ----------------------------------------------------------------------
    def run(self) -> None:
        """Serve until stopped (returns) or failed (raises LlmctlError)."""
        from llmdeploy_cli import paths
        from llmdeploy_cli.supervise.logfile import LogSink
        from llmdeploy_cli.supervise.procgroup import start_time

        name = self.profile.name
        paths.check_writable("runs")  # StateDirError (exit 3) before anything starts
        paths.check_writable("logs")
        self.lock = st_mod.RunLock(name)
        try:
            got = self.lock.acquire()
        except OSError as e:
            raise paths.state_fault(e) from None
        if not got:
            raise PreflightError(
                f"'{name}' is already being served", f"stop it first: llmctl stop {name}"
            )
        keep = False
        try:
            self.log = LogSink(st_mod.log_path(name), secrets=self.plan.secrets(), echo=self.echo)
            self.log.note(f"serve {name} ({self.backend.name}) from {self.profile_path}")
            self.state = RunState(
                name=name,
                backend=self.backend.name,
                profile=self.profile_path,
                profile_hash=st_mod.profile_hash(self.profile_path) if self.profile_path else None,
                base_url=self.endpoint.base_url,
                model=self.endpoint.model,
                port=_port_of(self.endpoint.base_url),
                log=str(self.log.path),
                managed=self.profile.server.managed,
                detached=self.detached,
                supervisor_pid=os.getpid(),
                supervisor_started=start_time(os.getpid()),
                stop_signal=int(self.stop_plan.signal),
                stop_grace_s=self.stop_plan.grace_s,
            )
            self._save()
            if self.profile.server.managed:
                Runner(self, Policy.from_spec(self.profile.restart)).run()
            else:
                # Detached and unmanaged: nothing of ours keeps running, so the record of
                # the ready server stays (status shows it, stop removes it).
                keep = self._run_unmanaged()
        except BaseException as e:
            keep = self.keep_failed_state
            if isinstance(e, LlmctlError):
                self._record_failure(e)
                raise
            if isinstance(e, OSError) and paths.under_state(e.filename):
                err = paths.state_fault(e)
                self._record_failure(err)
                raise err from None
            self._record_failure(LlmctlError(f"supervisor failed: {type(e).__name__}: {e}"))
            raise
        finally:
            if self._http is not None:
                for c in self._http:
                    c.close()
                self._http = None
            if self.log is not None:
                self.log.note("supervisor done")
                self.log.close()
            if not keep:
                try:
                    st_mod.remove(name)
                except OSError:  # a read-only folder: status finds it stale later
                    pass
            self.lock.release()

    def _run_unmanaged(self) -> bool:
        """managed: false: someone else runs the server; readiness, after_ready, smoke.
        Returns True when the record of the ready server is to be kept (detached)."""
        self.state.phase = STARTING
        self._save()
        self._write_files()
        try:
            self._ready_ladder(None, first=True)
        except Stopped:
            return False
        self.state.phase = READY
        self.state.ready_at = time.time()
        if self.readiness is not None:
            self.state.timings = self.readiness.as_dict()
        self._save()
        self.on_event("phase", READY)
        if self.on_first_ready is not None:
            self.on_first_ready(self)
        if self.detached:
            self.state.supervisor_pid = self.state.supervisor_started = None
            self._save()
            return True
        self.stop_event.wait()
        return False

    def _write_files(self) -> None:
        """Generated files (an Ollama Modelfile) the steps read."""
        from llmdeploy_cli.fsutil import atomic_write

        for f in self.plan.files:
            atomic_write(os.path.expanduser(f.path), f.content, mode=0o600)

    # -- Ops (the seam the Runner drives) ---------------------------------------------------
    def spawn(self) -> Child:
        from llmdeploy_cli.paths import state_dir
        from llmdeploy_cli.supervise.process import spawn

        self._write_files()
        cmd = self.plan.server.command
        env = {
            **self.environ,
            **cmd.env,
            **self.backend.extra_env_for_serve(self.profile, str(state_dir())),
        }
        self.log.note(f"start: {cmd.display()}")
        child = spawn(
            cmd.argv, env, cwd=cmd.cwd, log=self.log, watchdog_grace=self.stop_plan.grace_s
        )
        self._child = child
        self.state.engine_pid = child.pid
        self.state.engine_started = child.started
        self.state.pgid = child.pgid
        self._save()
        self.on_event("spawned", f"pid {child.pid}")
        return child

    def wait_ready(self, child: Child, first: bool) -> None:
        self._ready_ladder(child, first)

    def wait_exit(self, child: Child) -> int | None:
        # With a StopFlag and a pidfd, sleep until either is readable (checking storage
        # faults at least each second); else poll every 50 ms. A gateway holds one such thread per
        # loaded model: polling was 20 wake-ups a second each while idle.
        exited = child.exit_fd() if isinstance(self.stop_event, StopFlag) else None
        try:
            while True:
                rc = child.poll()
                if rc is not None:
                    self.log.join(0.5)
                    self.log.note(f"engine exited with status {rc}")
                    return rc
                if self._faults or self.log.fault is not None:
                    self._check_storage()
                if exited is None:
                    stopped = self.stop_event.wait(0.05)
                else:  # a failed state write: wake when its retry is due (STORAGE_RETRY_S)
                    due = self._retry_at - time.monotonic() if "state" in self._faults else 1.0
                    stopped = self.stop_event.wait(min(1.0, max(0.05, due)), also=(exited,))
                if stopped:
                    return None
        finally:
            if exited is not None:
                os.close(exited)

    def exit_error(self, rc: int) -> LlmctlError:
        from llmdeploy_cli.supervise.procgroup import how_it_ended

        return self._explain(EngineExited(rc, f"the engine {how_it_ended(rc)} after it was ready"))

    def stop_child(self, child: Child) -> None:
        if child.poll() is None:
            self.log.note(
                f"stopping the engine group {child.pgid} (signal {int(self.stop_plan.signal)}, "
                f"SIGKILL after {self.stop_plan.grace_s:g} s)"
            )
        took = child.stop(self.stop_plan.signal, self.stop_plan.grace_s)
        self.on_event("stopped", f"{took:.2f}")

    def sleep(self, seconds: float) -> bool:
        return not self.stop_event.wait(seconds)

    def phase(self, machine: Machine, detail: dict) -> None:
        s = self.state
        if self._faults or (self.log is not None and self.log.fault is not None):
            self._check_storage(now=True)
        s.phase = machine.phase
        s.restarts = machine.restarts
        err = detail.get("error")
        if machine.phase == READY:
            s.ready_at = time.time()
            s.step = None
            s.error = None
            if self.readiness is not None:
                s.timings = self.readiness.as_dict()
        elif machine.phase == STOPPED:
            s.engine_pid = s.engine_started = s.pgid = None
        if err is not None:
            s.error = _error_doc(err)
            delay = detail.get("delay")
            if delay is not None:
                count = machine.restart_count()
                self.log.note(
                    f"{err.message}; restart #{machine.restarts} in {delay:g} s ({count})"
                )
                self.on_event("restart", f"{err.message}; restarting in {delay:g} s ({count})")
        # Going down (failed, stopping, stopped): a state that cannot be written must not
        # hide the failure being reported.
        self._save(strict=False if machine.phase in (FAILED, STOPPING, STOPPED) else None)
        if machine.phase == READY:
            self._served = True  # the ready record is written: from now on, tolerate
        self.on_event("phase", machine.phase)
        if machine.phase == READY and machine.restarts == 0 and self.on_first_ready is not None:
            first, self.on_first_ready = self.on_first_ready, None
            first(self)

    # -- readiness and after_ready ----------------------------------------------------------
    def _ready_ladder(self, child: Child | None, first: bool) -> None:
        """The readiness ladder with the backend's after-ready steps between the health
        rung and the model rung: a model Ollama must pull or create (or Xinference must
        launch) is listed only after them."""
        from llmdeploy_cli import readiness

        probe_client, _ = self._clients()

        def on_phase(name: str) -> None:
            self.state.step = name
            self._save()
            self.on_event("step", name)

        try:
            self.readiness = readiness.wait_ready(
                self.backend,
                self.endpoint,
                self.profile,
                alive=child.poll if child is not None else None,
                activity=(lambda: self.log.last_activity) if child is not None else None,
                stop=self.stop_event.is_set,
                on_phase=on_phase,
                timeout=self.timeout if first else None,
                after_health=lambda: self._after_ready(child),
                client=probe_client,
            )
        except readiness.Interrupted:
            raise Stopped() from None
        except readiness.Crashed as e:
            if child is not None and child.log is not None:
                child.log.join(1.0)  # the last words of the engine are the useful ones
            raise self._explain(EngineExited(e.returncode, e.message)) from None
        except NotReadyError as e:
            raise self._explain(e) from None
        self.log.note(
            "endpoint answers: "
            + ", ".join(f"{k} {v:.3f} s" for k, v in self.readiness.timings.items())
        )

    def _clients(self) -> tuple:
        """HTTP clients for readiness probes (short timeouts) and after-ready actions.

        Made once per run, before the engine can answer: building one costs 25-80 ms (its
        TLS context), which would otherwise sit between "the engine answers" and "ready".
        """
        if self._http is None:
            from llmdeploy_cli.openai_http.clients import sync_client

            url, key = self.endpoint.base_url, self.endpoint.api_key(self.environ)
            probe = sync_client(url, api_key=key, timeout=5.0, connect=1.0)
            action = sync_client(url, api_key=key, timeout=30.0)
            self._http = (probe, action)
        return self._http

    def _after_ready(self, child: Child | None) -> None:
        import httpx

        def report(message: str, fraction: float | None = None) -> None:
            if self.stop_event.is_set():
                raise Stopped()
            if child is not None and child.poll() is not None:
                raise self._explain(
                    EngineExited(child.poll(), "the engine exited during after-ready steps")
                )
            self.log.note(message)
            pct = f" {fraction:.0%}" if fraction is not None else ""
            self.on_event("after_ready", f"{message}{pct}")

        _, client = self._clients()
        try:
            self.backend.after_ready(client, self.plan, self.profile, report)
        except (Stopped, LlmctlError):
            raise
        except httpx.HTTPError as e:
            raise self._explain(
                LlmctlError(f"after-ready step failed: {type(e).__name__}: {e}")
            ) from None

    def _explain(self, err: LlmctlError) -> LlmctlError:
        """Attach the log tail and a diagnosis (as the hint) to a failure."""
        from llmdeploy_cli.supervise.diagnose import diagnose

        tail = self.log.tail(TAIL_LINES) if self.log is not None else []
        found = diagnose(
            tail if self.log is None else self.log.tail(200),
            self.profile,
            self.backend,
            port=_port_of(self.endpoint.base_url),
        )
        rc = getattr(err, "returncode", None)
        if isinstance(err, EngineExited) and rc is not None:
            from llmdeploy_cli.supervise.diagnose import exit_diagnosis
            from llmdeploy_cli.supervise.procgroup import signal_of

            err.exit_status = rc
            err.signal = signal_of(rc)
            by_signal = exit_diagnosis(rc)
            if by_signal is not None:
                found = [*found, by_signal] if found else [by_signal]
        if found:
            err.hint = "; ".join(str(d) for d in found) + (f" ({err.hint})" if err.hint else "")
            err.details = [d.as_dict() for d in found]
        err.log_tail = tail
        err.log_path = str(self.log.path) if self.log is not None else None
        return err

    # -- state ------------------------------------------------------------------------------
    def _save(self, strict: bool | None = None) -> None:
        """Write the state. `strict` (the default until the engine was first ready): a
        failure raises StateDirError. Otherwise it is recorded and retried."""
        if self.state is None:
            return
        # A retry that succeeds writes the recovery with it (one write, never a state on
        # disk that shows the fault as current after the write that ended it).
        mark = self._faults.keys() == {"state"} and self.state.storage_error is not None
        if mark:
            self.state.storage_error["recovered"] = time.time()
        try:
            st_mod.save(self.state)
        except OSError as e:
            if mark:
                self.state.storage_error.pop("recovered", None)
            if strict if strict is not None else not self._served:
                from llmdeploy_cli import paths

                raise paths.state_fault(e) from None
            self._storage("state", f"{e.strerror or e}: {e.filename or st_mod.runs_dir()}")
            return
        if "state" in self._faults:
            self._recovered("state", saved=True)

    def _check_storage(self, now: bool = False) -> None:
        """Record a log that cannot be written (or can again); retry a state write."""
        fault = self.log.fault if self.log is not None else None
        if fault is not None and self._faults.get("log") != fault:
            self._storage("log", fault)
            self._save(strict=False)
        elif fault is None and "log" in self._faults:
            self._recovered("log")
        if "state" in self._faults and (now or time.monotonic() >= self._retry_at):
            self._retry_at = time.monotonic() + STORAGE_RETRY_S
            self._save(strict=False)

    def _storage(self, what: str, why: str) -> None:
        """A write under the state folder failed while the engine runs: say so once per
        cause (the state when it can be written, the log when it can, `storage` events)."""
        if self._faults.get(what) == why:
            return
        self._faults[what] = why
        self._retry_at = time.monotonic() + STORAGE_RETRY_S
        label = "state file" if what == "state" else "engine log"
        msg = (
            f"cannot write the run's {label} ({why}); the engine is still supervised and "
            f"llmctl keeps trying (free space or fix the state folder)"
        )
        self.state.storage_error = {"what": label, "message": msg, "since": time.time()}
        if self.log is not None:
            self.log.note(msg)
        self.on_event("storage", msg)

    def _recovered(self, what: str, saved: bool = False) -> None:
        """`what` can be written again: say so, and write the state unless the write that
        found it out (`saved`) already holds the recovery."""
        self._faults.pop(what, None)
        label = "state file" if what == "state" else "engine log"
        msg = f"the run's {label} can be written again"
        if self.state.storage_error is not None and not self._faults:
            self.state.storage_error.setdefault("recovered", time.time())
        if self.log is not None:
            self.log.note(msg)
        self.on_event("storage", msg)
        if not saved:
            self._save(strict=False)

    def _record_failure(self, err: LlmctlError) -> None:
        if self.state is None:
            return
        self.state.phase = FAILED
        self.state.step = None
        self.state.error = _error_doc(err)
        self.state.engine_pid = self.state.engine_started = self.state.pgid = None
        self._save(strict=False)
        if self.log is not None:
            self.log.note(f"failed: {err.message}")


def _error_doc(err: LlmctlError) -> dict:
    """The state's error document: the error envelope's body (what `--json` prints)."""
    return err.envelope()["error"]


def _port_of(url: str) -> int | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).port
    except ValueError:
        return None


def error_from_doc(doc: dict) -> LlmctlError:
    """Rebuild an LlmctlError (with its exit code) from a state's error document."""
    from llmdeploy_cli import errors

    by_code = {
        int(c.code): c
        for c in (
            errors.PreflightError,
            errors.NotReadyError,
            errors.UnreachableError,
            errors.AssertionFailed,
            errors.UsageError,
        )
    }
    cls = by_code.get(int(doc.get("code", 1)), LlmctlError)
    err = cls(doc.get("message", "failed"), doc.get("hint"), details=doc.get("details"))
    if cls is LlmctlError and doc.get("kind"):
        err.kind = doc["kind"]
    for key, attr in ENGINE_KEYS:
        if doc.get(key) not in (None, "", []):
            setattr(err, attr, doc[key])
    err.log_tail = doc.get("log_tail") or []
    return err


__all__ = ["ServeSession", "STOPPED", "error_from_doc"]
