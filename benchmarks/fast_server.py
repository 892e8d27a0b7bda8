"""A minimal, fast streaming chat server for measuring load-generator capacity (not a test).

It answers POST /v1/chat/completions (and /v1/completions) at once with a short SSE
stream (a role chunk, `--tokens` one-word content chunks, a usage chunk, `[DONE]`) written
in one send, so the client, not the server, sets the pace. GET /v1/models lists `--model`;
GET /health is 200. HTTP/1.1 keep-alive, raw asyncio protocol, no framework.

`--procs N` runs N processes on one port (SO_REUSEPORT). Each process stamps every chat
request's arrival (time.monotonic(), one clock for every process on Linux); on SIGUSR1 it
writes its stamps since the last dump to `--stamps-dir/<pid>.txt` (one float a line) and
starts over. That is how benchmarks/client_capacity.py measures every client the same way.

Run: python benchmarks/fast_server.py --port 0 --procs 1 --stamps-dir DIR
(prints `READY <port> <pid> <pid> ...` on stdout when every process listens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from pathlib import Path


def _body(model: str, tokens: int) -> bytes:
    base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        *(
            {**base, "choices": [{"index": 0, "delta": {"content": f" w{k}"}}]}
            for k in range(tokens)
        ),
        {
            **base,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
        },
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens},
        },
    ]
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return sse + b"data: [DONE]\n\n"


class Http(asyncio.Protocol):
    def __init__(self, srv):
        self.srv = srv
        self.buf = b""

    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data: bytes):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            n = 0
            for line in head.split("\r\n")[1:]:
                if line[:15].lower() == "content-length:":
                    n = int(line[15:].strip())
            if len(self.buf) < end + 4 + n:
                return
            self.buf = self.buf[end + 4 + n :]
            method, path = head.split(" ", 2)[:2]
            self.reply(method, path)

    def reply(self, method: str, path: str):
        if method == "POST" and path.endswith("/completions"):
            self.srv.stamps.append(time.monotonic())
            body, ctype = self.srv.stream, b"text/event-stream"
        elif path.startswith("/v1/models"):
            body, ctype = self.srv.models, b"application/json"
        else:
            body, ctype = b'{"status": "ok"}', b"application/json"
        self.t.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: keep-alive\r\n\r\n" + body
        )  # fmt: skip


class Srv:
    def __init__(self, args):
        self.stream = _body(args.model, args.tokens)
        self.models = json.dumps(
            {"object": "list", "data": [{"id": args.model, "object": "model"}]}
        ).encode()
        self.stamps: list[float] = []
        self.dir = Path(args.stamps_dir) if args.stamps_dir else None

    def dump(self):
        if self.dir is None:
            return
        stamps, self.stamps = self.stamps, []
        tmp = self.dir / f".{os.getpid()}.tmp"
        tmp.write_text("".join(f"{t!r}\n" for t in stamps))
        tmp.rename(self.dir / f"{os.getpid()}.txt")


def _serve(sock: socket.socket, args, ready) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main():
        srv = Srv(args)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, srv.dump)
        server = await loop.create_server(lambda: Http(srv), sock=sock, backlog=4096)
        ready.put(os.getpid())
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _socket(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    return s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--model", default="fast")
    p.add_argument("--tokens", type=int, default=2)
    p.add_argument("--stamps-dir", default=None)
    args = p.parse_args(argv)
    first = _socket(args.host, args.port)
    port = first.getsockname()[1]
    socks = [first] + [_socket(args.host, port) for _ in range(args.procs - 1)]
    ctx = mp.get_context("fork")
    ready = ctx.Queue()
    procs = [ctx.Process(target=_serve, args=(s, args, ready), daemon=True) for s in socks]
    for proc in procs:
        proc.start()
    pids = [ready.get(timeout=30) for _ in procs]
    print("READY", port, *pids, flush=True)

    def stop(*_):
        for proc in procs:
            proc.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
