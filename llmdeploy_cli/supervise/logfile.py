"""The engine's log: a size-capped file under the state dir, plus the last lines in memory.

Every line is scrubbed of the plan's secrets before it is written, kept or echoed.
Progress bars (carriage returns) count as lines, so a download or weight load shows up as
activity, which is what extends readiness deadlines (health.extend_on_progress).

A write that fails (a full disk, a file system gone read-only) never stops the engine or
its supervisor: the line stays in memory, `fault` says why (the supervisor records it in
the run's state), and the file is opened again every RETRY_S seconds; once a write works,
a note says how many lines are missing.
"""

from __future__ import annotations

import collections
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from llmdeploy_cli.command import scrub

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 2
RING_LINES = 400
_SPLIT = re.compile(r"[\r\n]")
_PARTIAL_MAX = 64 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RETRY_S = 2.0


class LogSink:
    """Collects an engine's output: file (rotated at max_bytes), ring buffer, echo."""

    def __init__(
        self,
        path: str | Path,
        *,
        secrets: Iterable[str] = (),
        max_bytes: int = MAX_BYTES,
        backups: int = BACKUPS,
        ring: int = RING_LINES,
        echo: Callable[[str], None] | None = None,
    ):
        self.path = Path(path)
        self.secrets = {s for s in secrets if s}
        self.max_bytes = max_bytes
        self.backups = backups
        self.echo = echo
        self.lines: collections.deque[str] = collections.deque(maxlen=ring)
        self.last_activity = time.monotonic()
        self.bytes_seen = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.fault: str | None = None  # why the file cannot be written now (None: it can)
        self.fault_since: float | None = None  # wall clock of the first failed write
        self.unwritten = 0  # lines kept only in memory since the fault
        self._retry_at = 0.0
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fh = self._open()

    def _open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):  # never chmod a device the path names
                os.fchmod(fd, 0o600)
        except OSError:
            pass
        return os.fdopen(fd, "a", encoding="utf-8", errors="replace")

    # -- writing --------------------------------------------------------------------------
    def attach(self, stream) -> threading.Thread:
        """Read a binary stream (the engine's stdout) until EOF in a daemon thread."""
        t = threading.Thread(target=self._pump, args=(stream,), name="llmctl-log", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _pump(self, stream) -> None:
        fd = stream.fileno()
        partial = ""
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.bytes_seen += len(chunk)
                self.last_activity = time.monotonic()
                text = partial + chunk.decode("utf-8", errors="replace")
                parts = _SPLIT.split(text)
                partial = parts.pop()
                if len(partial) > _PARTIAL_MAX:
                    parts.append(partial)
                    partial = ""
                for line in parts:
                    if line.strip():
                        self.write_line(line)
        finally:
            if partial.strip():
                self.write_line(partial)
            try:
                stream.close()
            except OSError:
                pass

    def write_line(self, line: str) -> None:
        line = _ANSI.sub("", scrub(line, self.secrets).rstrip())
        with self._lock:
            self.lines.append(line)
            self._to_file(line + "\n")
        if self.echo is not None:
            try:
                self.echo(line)
            except Exception:  # noqa: BLE001 - a broken terminal must not stop the log
                self.echo = None

    def _to_file(self, data: str) -> None:
        """Write one line (lock held); a failure is recorded and retried, never raised."""
        if self._closed:
            return
        if self._fh is None:
            if time.monotonic() < self._retry_at:
                self.unwritten += 1
                return
            try:
                self._fh = self._open()
            except OSError as e:
                self._failed(e)
                return
            if self.fault is not None:
                data = (
                    f"[llmctl] {self.unwritten} line(s) missing here: the log could not be "
                    f"written ({self.fault})\n" + data
                )
        try:
            if self._fh.tell() + len(data) > self.max_bytes:
                self._rotate()
            self._fh.write(data)
            self._fh.flush()
        except (OSError, ValueError) as e:
            self._failed(e)
            return
        self.fault = self.fault_since = None
        self.unwritten = 0

    def _failed(self, e: Exception) -> None:
        why = getattr(e, "strerror", None) or str(e)
        if self.fault is None:
            self.fault, self.fault_since = f"{why}: {self.path}", time.time()
        self.unwritten += 1
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()  # flushing what it holds fails again; the descriptor is closed
            except (OSError, ValueError):
                pass
        self._retry_at = time.monotonic() + RETRY_S

    def note(self, text: str) -> None:
        """A line from llmctl itself (phases, restarts), marked as such."""
        self.write_line(f"[llmctl] {text}")

    def _rotate(self) -> None:
        fh, self._fh = self._fh, None
        fh.close()
        for i in range(self.backups, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            dst = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, dst)
        self._fh = self._open()

    # -- reading --------------------------------------------------------------------------
    def tail(self, n: int = 30) -> list[str]:
        with self._lock:
            return list(self.lines)[-n:] if n > 0 else []

    def join(self, timeout: float = 1.0) -> None:
        for t in self._threads:
            t.join(timeout)

    def close(self) -> None:
        self.join(1.0)
        with self._lock:
            self._closed = True
            if self._fh is not None:
                try:
                    self._fh.close()
                except (OSError, ValueError):
                    pass
                self._fh = None


def read_tail(path: str | Path, n: int = 50) -> list[str]:
    """The last n lines of a log file (reading from the end; logs may be large)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block = 8192
            data = b""
            pos = size
            while pos > 0 and data.count(b"\n") <= n:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-n:] if n > 0 else []


def follow(
    path: str | Path, *, stop: Callable[[], bool], poll_s: float = 0.2, start_at_end: bool = True
) -> Iterator[str]:
    """Yield lines appended to `path` until stop() is true; survives rotation."""
    path = Path(path)
    f = None
    inode = None
    buf = ""
    try:
        while True:
            if f is None:
                try:
                    f = open(path, encoding="utf-8", errors="replace")
                    inode = os.fstat(f.fileno()).st_ino
                    if start_at_end:
                        f.seek(0, os.SEEK_END)
                    start_at_end = False
                except FileNotFoundError:
                    f = None
            if f is not None:
                chunk = f.read()
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split("\n")
                    yield from lines
                    continue
                try:
                    if os.stat(path).st_ino != inode:  # rotated: read the new file from start
                        f.close()
                        f = None
                        continue
                except FileNotFoundError:
                    pass
            if stop():
                if buf:
                    yield buf
                return
            time.sleep(poll_s)
    finally:
        if f is not None:
            f.close()
