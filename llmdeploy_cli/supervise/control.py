"""Working with runs from any shell: start detached, list, wait, stop (no printing here)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from llmdeploy_cli.errors import LlmctlError, NotReadyError
from llmdeploy_cli.supervise import state as st_mod
from llmdeploy_cli.supervise.state import FAILED, READY, RunState

POLL_S = 0.02


def supervisor_log(name: str) -> Path:
    return st_mod.logs_dir() / f"{name}.supervisor.log"


def start_detached(
    profile_path: str | Path,
    name: str,
    *,
    port: int | None,
    timeout: float | None,
    on_state: Callable[[RunState], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    grace_s: float = 15.0,
) -> RunState:
    """Start the supervisor daemon and wait until the run is ready (returns its state) or
    failed (raises the run's own error, with its exit code and log tail). A stop asked for
    meanwhile (`stop_requested`) stops the run and raises `machine.Stopped`."""
    from llmdeploy_cli import paths
    from llmdeploy_cli.supervise.daemon import build_argv
    from llmdeploy_cli.supervise.machine import Stopped
    from llmdeploy_cli.supervise.session import error_from_doc

    # A state folder the supervisor could not write is named here, before it starts: it
    # would fail with nothing to say but an empty log.
    paths.check_writable("runs")
    paths.check_writable("logs")
    slog = supervisor_log(name)
    try:
        st_mod.remove(name)  # a failed or stale record of an earlier run (preflight cleaned it)
        fd = os.open(slog, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        raise paths.state_fault(e) from None
    try:
        proc = subprocess.Popen(
            build_argv(str(Path(profile_path).resolve()), port=port, timeout=timeout),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)
    last_phase = None
    # The daemon enforces --timeout; this is a safety net against a wedged daemon.
    limit = time.monotonic() + (timeout + grace_s + 30.0 if timeout else 7 * 24 * 3600.0)
    while True:
        st = st_mod.load(name)
        mine = st is not None and st.supervisor_pid == proc.pid
        if mine and on_state is not None and (st.phase, st.step) != last_phase:
            last_phase = (st.phase, st.step)
            on_state(st)
        if mine and st.phase == READY:
            return st
        rc = proc.poll()
        if (mine and st.phase == FAILED) or rc is not None:
            if rc is None:
                proc.wait(timeout=30)
            st = st_mod.load(name)
            if st is not None and st.supervisor_pid == proc.pid and st.error:
                st_mod.remove(name)
                raise error_from_doc(st.error)
            if proc.returncode == 0:
                raise LlmctlError(
                    f"'{name}' was stopped before it was ready",
                    hint=f"see llmctl logs {name}",
                )
            if st is not None and st.supervisor_pid == proc.pid:
                st_mod.clean_stale(st)  # it died without a word: take what is left down
            tail = _tail_text(slog)
            said = [ln for ln in tail.splitlines() if ln.startswith("llmctl supervisor: ")]
            if said and proc.returncode and proc.returncode > 0:
                # It failed before it could write a state (a profile error, a lost race
                # for the run lock): its own words and exit code.
                raise error_from_doc(
                    {"code": proc.returncode, "message": said[-1].split(": ", 1)[1]}
                )
            paths.check_writable("runs")  # a disk that filled meanwhile: name it
            paths.check_writable("logs")
            raise LlmctlError(
                f"the llmctl supervisor exited with status {proc.returncode} before the "
                "server was ready",
                hint=tail or f"see {slog}",
            )
        if stop_requested is not None and stop_requested():
            stop_run(name)
            raise Stopped()
        if time.monotonic() > limit:
            stop_run(name)
            raise NotReadyError(f"not ready within {timeout:g} s", "raise --timeout")
        time.sleep(POLL_S * 2.5)


def _tail_text(path: Path, n: int = 10) -> str:
    from llmdeploy_cli.supervise.logfile import read_tail

    return "\n".join(read_tail(path, n))


def runs(clean: bool = True) -> list[tuple[RunState, str]]:
    """Every recorded run with its liveness (running | failed | stale→cleaned)."""
    out = []
    for name in st_mod.names():
        st = st_mod.load(name)
        if st is None:
            continue
        live = st_mod.liveness(st)
        if live == "stale" and clean:
            st_mod.clean_stale(st)
            live = "stale (cleaned)"
        out.append((st, live))
    return out


def known_names() -> list[str]:
    """Every run name seen here: a record (runs/) or an engine log kept after its stop
    (logs/NAME.log). `stop` of a name outside it is a name llmctl never served."""
    names = set(st_mod.names())
    for p in st_mod.logs_dir().glob("*.log"):
        if not p.name.endswith(".supervisor.log"):
            names.add(p.name[: -len(".log")])
    for p in st_mod.logs_dir().glob("*/*.log"):  # a gateway's engines: GATEWAY/PROFILE
        names.add(f"{p.parent.name}{st_mod.SEP}{p.name[: -len('.log')]}")
    return sorted(names)


def similar_names(name: str, among: list[str] | None = None, n: int = 3) -> list[str]:
    """The known names closest to `name` (for "did you mean"): those it is part of (`qwen`
    for `qwen2.5-1.5b-instruct`), then those spelled alike."""
    import difflib

    pool = known_names() if among is None else among
    part = [k for k in pool if name and name in k and k != name]
    alike = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    return list(dict.fromkeys(part + alike))[:n]


def stop_run(name: str, *, timeout: float | None = None) -> dict:
    """Stop run `name`: SIGTERM to its supervisor (which stops the engine group and exits),
    SIGKILL to it and the group if it does not finish in time. Idempotent."""
    st = st_mod.load(name)
    if st is None:
        return {"name": name, "stopped": False, "was": None, "note": "not running"}
    t0 = time.monotonic()
    was = st.phase
    grace = st.stop_grace_s if st.stop_grace_s is not None else 15.0
    wait_s = timeout if timeout is not None else grace + 15.0
    from llmdeploy_cli.supervise.procgroup import signal_process, wait_gone

    note = None
    if st_mod.supervisor_alive(st) and st.supervisor_pid != os.getpid():
        signal_process(st.supervisor_pid, st.supervisor_started, signal.SIGTERM)
        if not wait_gone(st.supervisor_pid, st.supervisor_started, wait_s):
            signal_process(st.supervisor_pid, st.supervisor_started, signal.SIGKILL)
            wait_gone(st.supervisor_pid, st.supervisor_started, 5.0)
            note = "the supervisor did not stop in time and was killed"
    elif st.supervisor_pid and not st_mod.supervisor_alive(st):
        note = "the supervisor was gone (stale state)"
    # Whatever is left of the engine group (a killed supervisor, a stale record).
    st_mod.stop_engine(st, grace_s=grace)
    st_mod.remove(name)
    out = {
        "name": name,
        "stopped": True,
        "was": was,
        "seconds": round(time.monotonic() - t0, 3),
    }
    if note:
        out["note"] = note
    return out


def wait_run(
    name: str,
    timeout: float | None,
    on_state: Callable[[RunState], None] | None = None,
) -> RunState:
    """Wait until run `name` is ready (it may not have started yet)."""
    from llmdeploy_cli.supervise.session import error_from_doc

    limit = time.monotonic() + timeout if timeout else None
    last = None
    while True:
        st = st_mod.load(name)
        if st is not None:
            if on_state is not None and (st.phase, st.step) != last:
                last = (st.phase, st.step)
                on_state(st)
            live = st_mod.liveness(st)
            if live == "running" and st.phase == READY:
                return st
            if live == "failed" or st.phase == FAILED:
                raise error_from_doc(st.error or {"message": f"{name} failed"})
            if live == "stale":
                st_mod.clean_stale(st)
                raise LlmctlError(
                    f"'{name}' is not running (its supervisor is gone; cleaned up)",
                    hint=f"see llmctl logs {name}",
                )
        if limit is not None and time.monotonic() >= limit:
            where = f" (still {st.phase}: {st.step})" if st is not None else " (not started)"
            raise NotReadyError(f"'{name}' not ready within {timeout:g} s{where}")
        time.sleep(0.05)
