"""Take the engine's whole group down when its supervisor dies, however it dies.

The parent-death signal (process.py) reaches only the engine's leader; an engine with
worker processes (vLLM, SGLang) would leave them behind after a `kill -9` of llmctl. So
each spawn also starts this tiny process, in its own session, reading a pipe whose write
end only the supervisor holds. EOF on that pipe means the supervisor is gone: the engine
group (verified by the leader's start time) gets SIGTERM, SIGKILL after the grace period.

    python -m llmdeploy_cli.supervise.watchdog PGID LEADER_START GRACE_S   (stdin: the pipe)
"""

from __future__ import annotations

import os
import subprocess
import sys


def start(pgid: int, started: float | None, grace_s: float) -> subprocess.Popen | None:
    """Start a watchdog for group `pgid`; returns it (the caller keeps the pipe's write end
    open by keeping the Popen object's stdin)."""
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmdeploy_cli.supervise.watchdog",
                str(pgid),
                repr(started if started is not None else 0.0),
                repr(float(grace_s)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError:  # pragma: no cover - no room for one more process
        return None


def release(proc: subprocess.Popen | None) -> None:
    """The supervisor stopped the group itself: let the watchdog go."""
    if proc is None:
        return
    try:
        proc.stdin.close()
    except OSError:  # pragma: no cover
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()


def main(argv: list[str]) -> int:
    pgid, started, grace = int(argv[0]), float(argv[1]) or None, float(argv[2])
    try:
        while os.read(0, 4096):  # blocks until the supervisor is gone (EOF)
            pass
    except OSError:
        pass
    from llmdeploy_cli.supervise.procgroup import group_members, stop_group

    if group_members(pgid):
        stop_group(pgid, 15, grace, leader=pgid, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
