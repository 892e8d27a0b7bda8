"""Spawn an engine in its own process group, and stop the whole group (docs/design.md §5).

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
from llmdeploy_cli.supervise.procgroup import (  # noqa: F401  (re-exported)
    POLL_S,
    group_members,
    same_process,
    signal_process,
    start_time,
    stop_group,
    wait_gone,
)

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.supervise.logfile import LogSink

PR_SET_PDEATHSIG = 1


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

    def exit_fd(self) -> int | None:
        """A file descriptor that becomes readable when the leader exits (Linux pidfd; the
        caller closes it), or None where there is none (then poll)."""
        try:
            return os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd here, or the leader is already gone
            return None

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
