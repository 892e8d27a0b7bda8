"""What the asyncio stand-ins (timed_server.py, embed_server.py) share: one HTTP/1.1
request read off a keep-alive connection, a server that prints `READY <port>` once it
listens, and a test-side launcher that runs one in its own process and always kills it.

Standard library only: a stand-in may run under any Python (`python -m` from the repo
root, which the launcher makes its working directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What ends a keep-alive connection: the client closed it, or sent something unreadable.
CLOSED = (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict, bytes, float]:
    """(method, path without the query, lower-cased headers, body, arrival time)."""
    head = await reader.readuntil(b"\r\n\r\n")
    received = time.monotonic()
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(n) if n else b""
    return method, path.split("?")[0], headers, body, received


async def serve(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    host: str,
    port: int,
) -> None:
    server = await asyncio.start_server(handle, host, port, backlog=1024)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def launch(module: str, *args: str, python: str | None = None) -> Iterator[tuple[str, object]]:
    """Run `python -m MODULE --port 0 ARGS` from the repo root; yield (base_url, popen)."""
    proc = subprocess.Popen(
        [python or sys.executable, "-m", module, "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"{module} did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
