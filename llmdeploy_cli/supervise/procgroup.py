"""Process groups: who is in one, whether it is still ours, and stopping it (SIGTERM, SIGKILL
after the grace period, reap); how a process ended (its status in words). A leaf: the
supervisor, the watchdog and the run records use it, and it imports nothing of llmctl.

A pid is signalled only after its start time matches what was recorded (pids are reused).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.02
_START_TIME_TOLERANCE = 0.05  # psutil create_time is rounded to clock ticks


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


def signal_of(returncode: int | None) -> str | None:
    """'SIGKILL' for a process a signal ended: status -9 (Popen's way), or 137 (128 + 9, a
    shell's or a container runtime's way of saying the same). None for a plain exit."""
    if returncode is None or returncode == 0:
        return None
    num = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 160 else 0
    try:
        return signal.Signals(num).name if num else None
    except ValueError:
        return f"signal {num}"


def how_it_ended(returncode: int | None) -> str:
    """'exited with status 1'; for a process a signal ended (Popen's negative status),
    'was killed by SIGKILL (status -9)' ("exited with status -9" reads as a bug)."""
    if returncode is not None and returncode < 0:
        return f"was killed by {signal_of(returncode)} (status {returncode})"
    return f"exited with status {returncode}"


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
