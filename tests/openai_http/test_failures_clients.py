"""Transport failures classified alike for httpx and aiohttp, against real sockets; the
proxy rule; the client factories."""

from __future__ import annotations

import asyncio
import socket
import threading

import aiohttp
import httpx
import pytest

from llmdeploy_cli.errors import UnreachableError
from llmdeploy_cli.netutil import free_port
from llmdeploy_cli.openai_http.clients import (
    async_session,
    is_loopback,
    run,
    sync_client,
    use_proxy_env,
)
from llmdeploy_cli.openai_http.failures import (
    CONNECT,
    DISCONNECTED,
    TIMEOUT,
    TransportFailure,
    classify,
    unreachable_error,
)


class _Bad:
    """A TCP server that misbehaves in one way: `silent` never answers, `reset` closes the
    connection as soon as a request arrives."""

    def __init__(self, mode: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.mode == "reset":
                c.recv(65536)
                c.close()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def _sync_kind(url: str, timeout: float = 0.3) -> str:
    with sync_client(url, timeout=timeout) as c:
        with pytest.raises(httpx.TransportError) as ei:
            c.get(url)
    return classify(ei.value).kind


def _async_kind(url: str, timeout: float = 0.3) -> str:
    async def go():
        async with async_session(url, max_connections=2, timeout=timeout) as s:
            try:
                async with s.get(url) as r:
                    await r.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                return classify(e).kind
        return "no error"

    return run(go())


@pytest.mark.parametrize("kind_of", [_sync_kind, _async_kind], ids=["httpx", "aiohttp"])
def test_both_transports_speak_one_vocabulary(kind_of):
    refused = f"http://127.0.0.1:{free_port()}/v1/models"
    assert kind_of(refused) == CONNECT
    silent, reset = _Bad("silent"), _Bad("reset")
    try:
        assert kind_of(f"http://127.0.0.1:{silent.port}/") == TIMEOUT
        assert kind_of(f"http://127.0.0.1:{reset.port}/") == DISCONNECTED
    finally:
        silent.close()
        reset.close()


def test_socket_errors_and_messages():
    assert classify(ConnectionRefusedError(111, "Connection refused")) == TransportFailure(
        CONNECT, "connection refused"
    )
    assert classify(ConnectionResetError()).kind == DISCONNECTED
    assert classify(asyncio.TimeoutError()).kind == TIMEOUT
    assert classify(OSError(5, "I/O")).kind == "os_error"


def test_unreachable_error_lines():
    e = unreachable_error(TransportFailure(CONNECT, "connection refused"), "http://h:1/v1/x")
    assert isinstance(e, UnreachableError) and "connection refused" in str(e) and e.hint
    e = unreachable_error(TransportFailure(TIMEOUT, "read"), "http://h/v1", timeout=2)
    assert "did not answer in 2 s" in str(e) and "--timeout" in e.hint


def test_proxy_rule_loopback_never_proxied(monkeypatch):
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:1", "http://[::1]:8000"):
        assert is_loopback(url) and not use_proxy_env(url)
    assert use_proxy_env("https://api.example.com/v1")
    assert use_proxy_env("http://10.0.0.5:8000/v1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with sync_client("http://127.0.0.1:8000/v1") as c:
        assert not c._trust_env
    with sync_client("http://gpu-box:8000/v1") as c:
        assert c._trust_env

    async def sessions():
        async with async_session("http://127.0.0.1:1", max_connections=1, timeout=1) as a:
            async with async_session("http://gpu-box:1", max_connections=1, timeout=1) as b:
                return a.trust_env, b.trust_env

    assert run(sessions()) == (False, True)


def test_request_sent_hook_and_api_key():
    """The hook gets the request's own context; the key goes in the Authorization header."""
    from tests.standins.openai_standin import OpenAIStandin

    seen = []
    with OpenAIStandin(["m"], api_key="k") as s:

        async def go():
            async with async_session(
                s.base_url, max_connections=2, timeout=5, api_key="k", on_request_sent=seen.append
            ) as sess:
                async with sess.post(
                    s.base_url + "/embeddings",
                    data=b'{"model": "m", "input": "x"}',
                    trace_request_ctx="ctx-1",
                ) as r:
                    return r.status

        assert run(go()) == 200
    assert seen and set(seen) == {"ctx-1"}
