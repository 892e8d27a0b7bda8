"""A server that closes its keep-alive connection right after each streamed answer (what
llama.cpp's server does while announcing `Keep-Alive: timeout=5, max=100`): every request
through `openai_http.clients.post` still succeeds, and a server that drops fresh
connections is still reported as the failure it is."""

from __future__ import annotations

import asyncio
import socket
import threading

import aiohttp

from llmdeploy_cli.openai_http.clients import async_session, post

EVENTS = (b'data: {"choices": [1]}\n\n', b"data: [DONE]\n\n")
STREAM = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Keep-Alive: timeout=5, max=100\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS)
    + b"0\r\n\r\n"
)


class ClosingServer:
    """Answers one streamed response per connection, then closes it (`drop`: closes every
    connection without answering). Counts the requests it read."""

    def __init__(self, drop: bool = False) -> None:
        self.drop = drop
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    (
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    b"0",
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            if not self.drop:
                conn.sendall(STREAM)

    def close(self) -> None:
        self.sock.close()


async def _sequential(url: str, n: int) -> list[str]:
    out = []
    async with async_session(url, max_connections=2, timeout=5) as s:
        for _ in range(n):
            try:
                async with post(s, url, data=b"{}") as resp:
                    await resp.read()
                    out.append(str(resp.status))
            except aiohttp.ClientError as e:
                out.append(type(e).__name__)
    return out


def test_a_connection_closed_after_a_stream_is_not_reused_into_a_failure():
    srv = ClosingServer()
    try:
        url = f"http://127.0.0.1:{srv.port}/v1/chat/completions"
        got = asyncio.run(_sequential(url, 12))
    finally:
        srv.close()
    assert got == ["200"] * 12
    assert srv.requests == 12  # each request reached the server exactly once


def test_the_stand_in_reproduces_the_failure_with_plain_aiohttp():
    """Without `post`, the same sequence fails: the first test is not passing by luck."""
    srv = ClosingServer()

    async def plain(url: str) -> list[str]:
        out = []
        async with async_session(url, max_connections=2, timeout=5) as s:
            for _ in range(12):
                try:
                    async with s.post(url, data=b"{}") as resp:
                        await resp.read()
                        out.append("ok")
                except aiohttp.ClientError:
                    out.append("failed")
        return out

    try:
        got = asyncio.run(plain(f"http://127.0.0.1:{srv.port}/v1/chat/completions"))
    finally:
        srv.close()
    assert "failed" in got and "ok" in got


def test_a_server_that_drops_fresh_connections_still_fails():
    srv = ClosingServer(drop=True)
    try:
        url = f"http://127.0.0.1:{srv.port}/v1/chat/completions"
        got = asyncio.run(_sequential(url, 3))
    finally:
        srv.close()
    assert got == ["ServerDisconnectedError"] * 3
    assert srv.requests == 3  # never sent twice: no connection was reused
