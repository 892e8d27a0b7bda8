"""Client factories for OpenAI-compatible servers, and the one proxy rule.

- `use_proxy_env(url)`: HTTP(S)_PROXY / NO_PROXY apply to remote URLs only; loopback
  traffic never goes through a proxy (a proxy would see, log or refuse it).
- `sync_client(...)`: an `httpx.Client` (the supervisor, readiness, smoke and the backends'
  REST actions: synchronous and threaded; no retries, explicit timeouts).
- `async_session(...)`: an `aiohttp.ClientSession` (bench, the gateway): a pool as large as
  the concurrency, no retries, a read timeout per request, no total timeout, and an optional
  hook called when a request goes out to the socket (bench's send-lag stamp).
- `run(coro)`: asyncio.run on uvloop where installed (about 15 % less CPU per request in
  bench, docs/benchmarks.md), on the standard loop elsewhere.

HTTP libraries are imported inside the factories only.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp
    import httpx

T = TypeVar("T")


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def use_proxy_env(url: str) -> bool:
    """Honour HTTP(S)_PROXY for remote URLs only: a proxy must never see loopback traffic."""
    return not is_loopback(url)


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def sync_client(
    url: str,
    *,
    api_key: str | None = None,
    timeout: float | None = 30.0,
    connect: float = 10.0,
    max_connections: int = 4,
    keepalive: int = 2,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """A synchronous client for the server at `url` (proxy rule applied, no retries).
    `timeout` is per request (None: no limit); connecting is capped at `connect`."""
    import httpx

    t = httpx.Timeout(timeout, connect=connect if timeout is None else min(timeout, connect))
    return httpx.Client(
        headers={**auth_headers(api_key), **(headers or {})},
        timeout=t,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive),
        trust_env=use_proxy_env(url),
    )


KEEPALIVE_S = 3.0


def async_session(
    url: str,
    *,
    max_connections: int,
    timeout: float | None,
    api_key: str | None = None,
    connect: float = 10.0,
    headers: dict[str, str] | None = None,
    on_request_sent: Callable[[Any], None] | None = None,
) -> aiohttp.ClientSession:
    """An async session for the server at `url`; open it with `async with` inside the loop.

    `timeout` is the read timeout (the longest quiet gap while waiting for bytes), not a
    total: a long stream that keeps sending is never cut. `on_request_sent(ctx)` is called
    as a request's bytes are handed to the socket (aiohttp's chunk-sent trace: it fires
    right before each body write, which carries the buffered headers; a request may call
    it more than once), with the `trace_request_ctx=` that request passed. (aiohttp's
    headers-sent trace fires when the headers are only buffered: on Python 3.11 the body
    write, and with it the request, goes out one event-loop turn later.)
    """
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        # Below the idle timeout of the servers llmctl talks to (uvicorn and llama.cpp's
        # cpp-httplib close an idle keep-alive connection after 5 s): reusing a connection
        # the server is closing fails the request ("Server disconnected", or "Can not write
        # request body"), and a POST is never retried. Closing first costs one reconnect.
        keepalive_timeout=KEEPALIVE_S,
        ttl_dns_cache=300,
    )
    tc = aiohttp.TraceConfig()

    async def reused(session, ctx, params) -> None:
        if isinstance(ctx.trace_request_ctx, Attempt):
            ctx.trace_request_ctx.reused = True

    tc.on_connection_reuseconn.append(reused)
    if on_request_sent is not None:

        async def sent(session, ctx, params) -> None:
            user = ctx.trace_request_ctx
            on_request_sent(user.user if isinstance(user, Attempt) else user)

        tc.on_request_chunk_sent.append(sent)
    return aiohttp.ClientSession(
        connector=connector,
        # pool waits are the bench's own queueing (the concurrency cap bounds them)
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=timeout),
        headers={**auth_headers(api_key), **(headers or {})},
        trust_env=use_proxy_env(url),
        trace_configs=[tc],
    )


class Attempt:
    """The trace context of one try of a request: whether it rode a pooled connection, and
    the caller's own `trace_request_ctx` (what `on_request_sent` receives)."""

    __slots__ = ("reused", "user")

    def __init__(self, user: Any) -> None:
        self.user = user
        self.reused = False


@asynccontextmanager
async def post(session: aiohttp.ClientSession, url: str, *, trace_request_ctx: Any = None, **kw):
    """`session.post(url, ...)` as an async context manager, tried again when a pooled
    keep-alive connection turns out closed by the server before the request reached it.

    llama.cpp's server closes the connection after every streamed answer while announcing
    keep-alive; the close lands just after the last chunk, so the pool can hand the
    connection out again and the next request fails ("Server disconnected", "Can not write
    request body") without the server ever seeing it. Only a try on a reused connection is
    repeated (at most once per pooled connection): a failure on a fresh connection is
    reported as it is, so a retry never hides a server's failure.
    """
    import aiohttp

    tries = (session.connector.limit if session.connector else 0) or 100
    for left in range(tries, -1, -1):
        attempt = Attempt(trace_request_ctx)
        try:
            resp = await session.post(url, trace_request_ctx=attempt, **kw)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if not attempt.reused or not left:
                raise
            continue
        async with resp:
            yield resp
        return


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed."""
    import asyncio

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(coro)
    return uvloop.run(coro)


__all__ = [
    "Attempt",
    "async_session",
    "auth_headers",
    "is_loopback",
    "post",
    "run",
    "sync_client",
    "use_proxy_env",
]
