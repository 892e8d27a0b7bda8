"""The one check of a user's `--url` (smoke and bench): what is wrong with it, or the
OpenAI-compatible root it names. Standard library only."""

from __future__ import annotations

from urllib.parse import urlsplit

from llmdeploy_cli.errors import UsageError

EXAMPLE = "e.g. http://127.0.0.1:8000/v1 (http:// is assumed when no scheme is given)"


def openai_root(url: str) -> str:
    """`http(s)://host[:port][/path]` -> the same URL ending in `/v1` (appended when the path
    does not end with it); no scheme means http://. Anything else is a UsageError (exit 2)
    that says what is wrong."""
    raw = url.strip()
    u = raw if "://" in raw else "http://" + raw
    try:
        parts = urlsplit(u)
        parts.port  # noqa: B018 - parses and range-checks the port
        host = parts.hostname
    except ValueError as e:
        raise UsageError(f"--url {raw!r} is not a valid URL: {e}", hint=EXAMPLE) from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(
            f"--url {raw!r}: the scheme must be http or https, not {parts.scheme!r}", hint=EXAMPLE
        )
    if not host:
        raise UsageError(f"--url {raw!r} names no host", hint=EXAMPLE)
    if parts.query or parts.fragment:
        raise UsageError(f"--url {raw!r}: give the API root, without ?query or #fragment")
    netloc = parts.netloc
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{netloc}{path}"
