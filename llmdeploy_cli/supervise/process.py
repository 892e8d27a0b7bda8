"""Spawn an engine in its own process group, and stop the whole group (DESIGN.md §5).

- argv lists only, never a shell; `start_new_session=True`, so the engine leads a new
  session and process group and a stop reaches every process it started;
- on Linux the engine gets a parent-death signal (prctl PR_SET_PDEATHSIG = SIGKILL), so a
  `kill -9` of its supervisor leaves nothing holding the GPU;
- stop: the plan's signal to the group, SIGKILL after the grace period, always reap;
- a pid is signalled only after its start time matches what was recorded (pids are reused).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import LlmctlError

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.supervise.logfile import LogSink

PR_SET_PDEATHSIG = 1
POLL_S = 0.02
_START_TIME_TOLERANCE = 0.05  # psutil create_time is rounded to clock ticks


def _prctl():
    """libc's prctl, loaded before fork (loading a library after fork is not safe)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None


def _preexec(death_signal: int | None, parent: int):
    prctl = _prctl() if death_signal else None

    def run() -> None:  # runs in the child between fork and exec: keep it tiny
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return run


def start_time(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), or None when it is gone."""
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def same_process(pid: int | None, started: float | None) -> bool:
    """True when `pid` is alive and is the process that started at `started` (not a reuse)."""
    if not pid or started is None:
        return False
    now = start_time(pid)
    return now is not None and abs(now - started) <= _START_TIME_TOLERANCE


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    if sys.platform.startswith("linux"):
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            # fields[0] state, [1] ppid, [2] pgrp
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                out.append(int(entry))
        return out
    import psutil  # pragma: no cover - non-Linux

    out = []  # pragma: no cover
    for p in psutil.process_iter():  # pragma: no cover
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (OSError, psutil.Error):
            continue
    return out  # pragma: no cover


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Child:
    """A spawned engine: the leader of its own process group."""

    pid: int
    pgid: int
    started: float | None  # psutil create_time of the leader
    popen: subprocess.Popen | None = None
    log: LogSink | None = None
    spawned_at: float = field(default_factory=time.monotonic)
    returncode: int | None = None
    watchdog: subprocess.Popen | None = None

    def poll(self) -> int | None:
        """The exit status once the leader has exited (it is reaped here), else None."""
        if self.returncode is not None:
            return self.returncode
        if self.popen is not None:
            self.returncode = self.popen.poll()
        elif not same_process(self.pid, self.started):
            self.returncode = -1
        return self.returncode

    def alive(self) -> bool:
        return self.poll() is None

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 15.0) -> float:
        """Stop the whole group: `sig`, SIGKILL after `grace_s`, reap. Returns seconds taken."""
        t0 = time.monotonic()
        stop_group(self.pgid, sig, grace_s, leader=self.pid, started=self.started, popen=self.popen)
        self.poll()
        if self.watchdog is not None:
            from llmdeploy_cli.supervise import watchdog

            watchdog.release(self.watchdog)
            self.watchdog = None
        if self.log is not None:
            self.log.join(1.0)
        return time.monotonic() - t0


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str | None = None,
    log: LogSink | None = None,
    death_signal: int | None = signal.SIGKILL,
    watchdog_grace: float | None = None,
) -> Child:
    """Start argv (never through a shell) as the leader of a new session and group.

    Output (stdout and stderr together) goes to `log` when given, else to /dev/null.
    `env` is the complete environment of the child. With `watchdog_grace`, a watchdog
    process stops the whole group should this process die without stopping it.
    """
    argv = [str(a) for a in argv]
    try:
        popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_preexec(death_signal, os.getpid()),
        )
    except FileNotFoundError:
        raise LlmctlError(f"cannot start the engine: {argv[0]} not found") from None
    except PermissionError:
        raise LlmctlError(f"cannot start the engine: {argv[0]} is not executable") from None
    if log is not None:
        log.attach(popen.stdout)
    started = start_time(popen.pid)
    child = Child(pid=popen.pid, pgid=popen.pid, started=started, popen=popen, log=log)
    if watchdog_grace is not None:
        from llmdeploy_cli.supervise import watchdog

        child.watchdog = watchdog.start(child.pgid, started, watchdog_grace)
    return child


def stop_group(
    pgid: int,
    sig: int = signal.SIGTERM,
    grace_s: float = 15.0,
    *,
    leader: int | None = None,
    started: float | None = None,
    popen: subprocess.Popen | None = None,
) -> bool:
    """Signal group `pgid`, SIGKILL whatever is left after `grace_s`, and reap the leader.

    The group is signalled only when it is provably ours: the leader is alive with the
    recorded start time, or the leader is gone and every remaining member started after
    it (the kernel does not hand out a pid that is still some group's id, so members of a
    dead leader's group are its descendants). Returns False when nothing was signalled
    because the pgid now belongs to someone else.
    """
    if not _owned(pgid, leader, started, popen):
        return False
    _signal_group(pgid, sig)
    deadline = time.monotonic() + grace_s
    killed = False
    while True:
        if popen is not None:
            popen.poll()
        if not group_members(pgid):
            break
        if not killed and time.monotonic() >= deadline:
            _signal_group(pgid, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + 5.0
        elif killed and time.monotonic() >= deadline:  # pragma: no cover - unkillable (D state)
            break
        time.sleep(POLL_S)
    if popen is not None:
        try:
            popen.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
    return True


def _owned(pgid: int, leader: int | None, started: float | None, popen) -> bool:
    if popen is not None and popen.returncode is None:
        return True  # our own unreaped child: its pid cannot have been reused
    if leader is not None and started is not None and same_process(leader, started):
        return True
    members = group_members(pgid)
    if not members:
        return popen is not None
    if pgid in members:  # a live leader whose start time does not match: a reused pid
        return False
    if started is None:
        return False
    return all((start_time(m) or 0) >= started - _START_TIME_TOLERANCE for m in members)


def signal_process(pid: int, started: float | None, sig: int) -> bool:
    """Send `sig` to `pid` only when it is the process that started at `started`."""
    if not same_process(pid, started):
        return False
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_gone(pid: int, started: float | None, timeout: float) -> bool:
    """Wait until `pid` (with that start time) has exited; True when it did in time."""
    deadline = time.monotonic() + timeout
    while same_process(pid, started):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True
