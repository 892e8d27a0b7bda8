"""A stop flag that a signal handler may set.

`threading.Event.set()` takes the lock that `Event.wait()` holds for a moment on its way
into the wait. Python runs signal handlers on the main thread, which is the waiting one:
a SIGINT that lands in that moment makes the handler wait for a lock its own thread holds,
and `llmctl serve` hangs instead of stopping. This flag takes no lock: `set()` stores a
bool and writes one byte to a pipe; `wait()` is a select() on that pipe. It never resets.

A Python-level handler alone still leaves a gap: a signal that arrives after `wait()` has
checked the flag but before the select() system call starts is handled by C at once and
by Python only after the select returns (its timeout later, or never). `on_signals` closes
it with `signal.set_wakeup_fd`: the C handler itself writes to the pipe.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterator
from contextlib import contextmanager


class StopFlag:
    """The part of `threading.Event` a run uses (set, is_set, wait), safe in handlers."""

    def __init__(self) -> None:
        self._set = False
        self.signum: int | None = None  # the first signal that set it, when one did
        self._r, self._w = os.pipe()  # not inherited by children (PEP 446)
        os.set_blocking(self._w, False)

    def set(self, signum: int | None = None) -> None:
        if self.signum is None and signum is not None:
            self.signum = signum
        self._set = True
        try:
            os.write(self._w, b"x")
        except OSError:  # a full pipe is already readable; a closed one has no waiter
            pass

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None, also: tuple[int, ...] = ()) -> bool:
        """Wait until set, `timeout` passes, or one of the file descriptors in `also`
        becomes readable (a process's pidfd: it exited). Returns whether it is set."""
        if not self._set:
            try:
                select.select([self._r, *also], [], [], timeout)
            except (OSError, ValueError):  # closed under us: nothing left to wait for
                pass
        return self._set

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._r = self._w = -1

    def __del__(self) -> None:  # a flag nobody holds any more gives its pipe back
        try:
            self.close()
        except Exception:  # noqa: BLE001 - late in interpreter shutdown
            pass

    def __enter__(self) -> StopFlag:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def on_signals(*signals: int) -> Iterator[StopFlag]:
    """A StopFlag that the given signals set (the first one is its `signum`), for the
    duration of the block; the previous handlers and wakeup fd come back afterwards.
    Main thread only, as every signal handler."""
    flag = StopFlag()
    old = {s: signal.signal(s, lambda signum, frame: flag.set(signum)) for s in signals}
    old_fd = signal.set_wakeup_fd(flag._w, warn_on_full_buffer=False)
    try:
        yield flag
    finally:
        signal.set_wakeup_fd(old_fd)
        for s, h in old.items():
            signal.signal(s, h)
        flag.close()
