"""Helpers for end-to-end tests that drive the real `llmctl` console script."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

LLMCTL = str(Path(sys.executable).parent / "llmctl")


def run(*args, env, timeout=120) -> subprocess.CompletedProcess:
    """`llmctl ARGS...` as a script would run it; never raises on a non-zero exit."""
    return subprocess.run(
        [LLMCTL, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def doc_of(proc: subprocess.CompletedProcess) -> dict:
    """The JSON document a `--json` command printed on stdout."""
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def processes_with(text: str) -> list[int]:
    """Pids of every process whose command line contains `text`."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(text in part for part in p.info["cmdline"] or []):
                found.append(p.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_gone(text: str, timeout: float = 20.0) -> list[int]:
    """Wait until no process mentions `text`; return the pids still there at the deadline."""
    deadline = time.monotonic() + timeout
    left = processes_with(text)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = processes_with(text)
    return left
