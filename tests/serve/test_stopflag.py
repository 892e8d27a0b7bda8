"""The stop flag that `llmctl serve` and the supervisor set from their signal handlers."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from llmdeploy_cli.supervise.stopflag import StopFlag, on_signals


def test_set_before_wait_returns_at_once_and_stays_set():
    with StopFlag() as f:
        assert not f.is_set() and f.wait(0) is False
        f.set(signal.SIGTERM)
        f.set(signal.SIGINT)  # the first signal is the one reported
        assert f.is_set() and f.wait() is True and f.wait(None) is True
        assert f.signum == signal.SIGTERM


def test_set_from_another_thread_wakes_a_wait_without_timeout():
    with StopFlag() as f:
        threading.Timer(0.05, f.set).start()
        assert f.wait() is True and f.signum is None


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer (POSIX)")
def test_a_signal_at_any_moment_of_the_wait_wakes_it():
    """The hangs this flag exists for: threading.Event.set() from a handler that lands while
    Event.wait() holds its lock never returns, and a Python handler that lands just before
    the select() system call runs only after it. Timers of 1-300 us hit every point of the
    way into and inside the wait; each must wake it (a 3 s wait that runs out fails)."""
    rng = random.Random(7)
    for _ in range(3000):
        with on_signals(signal.SIGALRM) as f:
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 3e-4))
            t0 = time.monotonic()
            woke = f.wait(3.0)
            waited = time.monotonic() - t0
            assert woke is True and f.signum == signal.SIGALRM
            assert waited < 2.5, "the signal did not wake the wait: it ran to its timeout"
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL  # put back


def test_closed_flag_neither_raises_nor_leaks():
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    f = StopFlag()
    f.close()
    f.set()  # a late signal after the run ended
    assert f.wait(0) is True
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


def test_wait_also_wakes_when_the_engine_exits():
    """The supervisor sleeps on the flag and the engine's pidfd together: an exit wakes it
    at once (no 50 ms polling), the flag stays unset, and a set flag still wins."""
    import subprocess

    from llmdeploy_cli.supervise.process import Child

    p = subprocess.Popen(["sleep", "0.3"], start_new_session=True)
    child = Child(pid=p.pid, pgid=p.pid, started=None, popen=p)
    fd = child.exit_fd()
    if fd is None:
        pytest.skip("no pidfd on this kernel: the session polls every 50 ms instead")
    try:
        with StopFlag() as f:
            t0 = time.monotonic()
            assert f.wait(10, also=(fd,)) is False
            took = time.monotonic() - t0
            assert 0.2 < took < 5 and child.poll() == 0
            f.set()
            assert f.wait(10, also=(fd,)) is True
    finally:
        os.close(fd)
