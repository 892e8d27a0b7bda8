"""One vocabulary for requests that failed below HTTP, for both transports.

`classify(exc)` maps an exception from httpx (sync), aiohttp (async) or the socket layer
to a `TransportFailure(kind, message)`. The kinds:

- `connect`: the connection was refused or the host cannot be reached (nothing listens);
- `connect_timeout`: connecting took too long (a firewall dropping packets, a dead host);
- `timeout`: connected, but the server did not answer (or went quiet) in time;
- `disconnected`: the server closed or reset the connection mid-request or mid-stream;
- otherwise the exception's class name (a TLS error, a proxy error, ...).

Bench counts failures by these kinds; smoke and the other commands turn them into one
`UnreachableError` line with a hint (`unreachable_error`). No HTTP library is imported
here (nor asyncio: the supervisor's memory stays as measured): an exception is recognised
through the module it came from.
"""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass

from llmdeploy_cli.errors import UnreachableError

CONNECT = "connect"
CONNECT_TIMEOUT = "connect_timeout"
TIMEOUT = "timeout"
DISCONNECTED = "disconnected"
KINDS = (CONNECT, CONNECT_TIMEOUT, TIMEOUT, DISCONNECTED)


@dataclass(frozen=True)
class TransportFailure:
    kind: str
    message: str


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    refused = getattr(getattr(e, "os_error", None), "errno", None) == errno.ECONNREFUSED
    if refused or "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text


def _httpx(e: BaseException) -> str | None:
    httpx = sys.modules.get("httpx")
    if httpx is None or not isinstance(e, httpx.HTTPError):
        return None
    if isinstance(e, httpx.ConnectTimeout):
        return CONNECT_TIMEOUT
    if isinstance(e, httpx.ConnectError):
        return CONNECT
    if isinstance(e, httpx.TimeoutException):
        return TIMEOUT
    if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return DISCONNECTED
    return type(e).__name__


def _aiohttp(e: BaseException) -> str | None:
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None or not isinstance(e, aiohttp.ClientError):
        return None
    if isinstance(e, aiohttp.ClientSSLError):
        return type(e).__name__
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return CONNECT_TIMEOUT
    if isinstance(e, aiohttp.ClientConnectorError):
        return CONNECT
    if isinstance(e, aiohttp.ServerTimeoutError):  # the read timeout (SocketTimeoutError)
        return TIMEOUT
    if isinstance(
        e, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)
    ):
        return DISCONNECTED
    return type(e).__name__


def classify(e: BaseException) -> TransportFailure:
    """The kind of a transport failure, and its message in a few words."""
    kind = _httpx(e) or _aiohttp(e)
    if kind is None:
        aio = sys.modules.get("asyncio")  # its TimeoutError is the builtin from 3.11 on
        if isinstance(e, TimeoutError) or (aio is not None and isinstance(e, aio.TimeoutError)):
            kind = TIMEOUT
        elif isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) in (
            errno.ECONNREFUSED,
            errno.EHOSTUNREACH,
            errno.ENETUNREACH,
        ):
            kind = CONNECT
        elif isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            kind = DISCONNECTED
        else:
            kind = "os_error" if isinstance(e, OSError) else type(e).__name__
    defaults = {CONNECT: "connection refused", CONNECT_TIMEOUT: "connect timed out"}
    msg = _reason(e) if str(e) else defaults.get(kind, type(e).__name__)
    return TransportFailure(kind, msg)


def unreachable_error(
    failure: TransportFailure, url: str, timeout: float | None = None
) -> UnreachableError:
    """The one line (and hint) a command shows for a request that failed below HTTP."""
    if failure.kind == CONNECT_TIMEOUT:
        return UnreachableError(
            f"cannot reach {url}: connect timed out",
            hint="check the host and port, and that no firewall drops the connection",
        )
    if failure.kind == TIMEOUT:
        within = f" in {timeout:g} s" if timeout else " in time"
        return UnreachableError(
            f"{url} accepted the connection but did not answer{within}",
            hint="raise --timeout (or smoke.timeout in the profile); the model may still be "
            "warming up",
        )
    if failure.kind == CONNECT:
        return UnreachableError(
            f"cannot reach {url}: {failure.message}",
            hint="is the server running? start it with 'llmctl serve FILE', or check --url",
        )
    return UnreachableError(
        f"{url}: the connection failed: {failure.message}",
        hint="the server closed the connection; see its log (llmctl logs NAME)",
    )


__all__ = [
    "CONNECT",
    "CONNECT_TIMEOUT",
    "DISCONNECTED",
    "KINDS",
    "TIMEOUT",
    "TransportFailure",
    "classify",
    "unreachable_error",
]
