"""The OpenAI wire format, as pure functions: SSE events, delta text, error text.

No HTTP library here: every function takes bytes, lines or decoded JSON, so the same
semantics serve the sync client (smoke, readiness), the async one (bench, gateway), and
tests that feed bytes by hand.

SSE (the WHATWG event-stream format, as OpenAI-compatible servers use it): lines end with
LF, CRLF or CR; `data:` lines of one event are joined with LF (one space after the colon
is dropped); a blank line ends the event; comment lines (`:`) and the other fields
(`event:`, `id:`, `retry:`) carry no payload and are skipped; an event still open when the
stream ends is delivered.

Delta text: a chunk's `delta` (or a message) carries text in `content`, in
`reasoning_content` / `reasoning` (what reasoning models fill inside the think block) or in
`tool_calls`. A tool call's text is its function name followed by its arguments, so the
text of a message equals the concatenation of the texts of its streamed deltas.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

try:  # faster JSON when installed (same results for every valid document)
    from orjson import dumps as _dumps
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls")
# the kind each text field counts as (bench reports kinds; smoke reports fields)
FIELD_KIND = {
    "content": "content",
    "reasoning_content": "reasoning",
    "reasoning": "reasoning",
    "tool_calls": "tool_calls",
}
DONE = b"[DONE]"


def loads(data: bytes | str) -> Any:
    """json.loads, faster where orjson is installed. Raises ValueError on bad JSON."""
    return _loads(data)


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (a request body)."""
    return _dumps(obj)


# -- SSE ----------------------------------------------------------------------------------
class SSEDecoder:
    """Incremental SSE parser: `feed(bytes)` returns the data payloads of the events the
    bytes completed (bytes, multi-line data joined with LF); `close()` returns the event
    left open at the end of the stream, if any."""

    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        if not buf:
            return []
        lines = buf.splitlines(keepends=True)
        last = lines[-1]
        if last.endswith(b"\n"):
            self._buf = b""
        else:  # incomplete, or a CR that may be the first half of a CRLF
            self._buf = last
            lines.pop()
        out: list[bytes] = []
        data = self._data
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line:
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                v = line[5:]
                data.append(v[1:] if v[:1] == b" " else v)
            # ":comment", "event:", "id:", "retry:" and unknown fields carry no data
        return out

    def close(self) -> list[bytes]:
        out = self.feed(b"\n") if self._buf else []
        if self._data:
            data, self._data = self._data, []
            out.append(b"\n".join(data))
        return out


def sse_data(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The data payloads of an SSE stream given as byte chunks (any split)."""
    dec = SSEDecoder()
    for chunk in chunks:
        yield from dec.feed(chunk)
    yield from dec.close()


def sse_data_lines(lines: Iterable[str | bytes]) -> Iterator[bytes]:
    """The data payloads of an SSE stream given as lines without their line endings (what
    `httpx.Response.iter_lines()` yields)."""
    dec = SSEDecoder()
    for line in lines:
        yield from dec.feed((line.encode() if isinstance(line, str) else line) + b"\n")
    yield from dec.close()


def parse_sse(body: bytes) -> list[bytes]:
    """Every data payload of a whole SSE body."""
    return list(sse_data([body]))


# -- chat text ------------------------------------------------------------------------------
def field_text(obj: dict, name: str) -> str:
    """The text one field of a delta or message carries ("" when none)."""
    v = obj.get(name)
    if not v:
        return ""
    if name == "tool_calls":
        out = []
        for call in v if isinstance(v, list) else [v]:
            fn = (call.get("function") if isinstance(call, dict) else None) or {}
            out.append(f"{fn.get('name') or ''}{fn.get('arguments') or ''}")
        return "".join(out)
    return v if isinstance(v, str) else json.dumps(v)


def delta_parts(delta: dict) -> list[tuple[str, str]]:
    """[(field, text), ...] for the text fields a delta (or message) fills, in TEXT_FIELDS
    order. `reasoning` that repeats `reasoning_content` (servers sending both names for one
    text) counts once, as `reasoning_content`."""
    out = []
    for name in TEXT_FIELDS:
        if delta.get(name):
            text = field_text(delta, name)
            if text and not (
                name == "reasoning" and out and out[-1] == ("reasoning_content", text)
            ):
                out.append((name, text))
    return out


def message_text(msg: dict) -> tuple[str, list[str]]:
    """(text, fields that carried text) of a non-streamed message: the text is the first
    field's (content first, then reasoning, then tool calls)."""
    parts = delta_parts(msg)
    return (parts[0][1] if parts else ""), [f for f, _ in parts]


# -- errors -----------------------------------------------------------------------------------
def error_text(doc: Any, limit: int = 300) -> str:
    """The server's own error message from a decoded error body, whatever shape it has:
    OpenAI `{"error": {"message"}}`, `{"error": "..."}`, FastAPI `{"detail": ...}` (a string
    or a list of validation errors), `{"message": ...}`, llama.cpp's loading `{"status"}`."""
    if isinstance(doc, dict):
        for key in ("error", "detail", "message"):
            v = doc.get(key)
            if isinstance(v, dict):
                return str(v.get("message") or v.get("detail") or v.get("msg") or v)[:limit]
            if isinstance(v, list) and v:
                first = v[0]
                return str(first.get("msg", first) if isinstance(first, dict) else first)[:limit]
            if v:
                return str(v)[:limit]
        if doc.get("status") and not isinstance(doc.get("status"), (int, float)):
            return str(doc["status"])[:limit]
    try:
        return json.dumps(doc)[:limit]
    except (TypeError, ValueError):
        return str(doc)[:limit]


def body_error_text(body: bytes | str, status: int | None = None, limit: int = 300) -> str:
    """error_text for a raw body: JSON when it parses, else the body's own words, else
    "HTTP <status>"."""
    try:
        return error_text(loads(body), limit)
    except ValueError:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        text = text.strip()
        return text[:limit] if text else (f"HTTP {status}" if status else "")


def looks_like_model_error(status: int, text: str, model: str) -> bool:
    """404, or a 400/422 that names the model as unknown (transformers serve: "pinned")."""
    if status == 404:
        return True
    if status not in (400, 422):
        return False
    low = text.lower()
    words = ("not found", "does not exist", "pinned", "unknown model", "not served", "no model")
    return any(w in low for w in words) and ("model" in low or model.lower() in low)


def model_ids(doc: Any) -> list[str] | None:
    """The ids of a GET /v1/models answer, or None when it is not a model list."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        return None
    return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]


__all__ = [
    "DONE",
    "FIELD_KIND",
    "TEXT_FIELDS",
    "SSEDecoder",
    "body_error_text",
    "delta_parts",
    "dumps",
    "error_text",
    "field_text",
    "loads",
    "looks_like_model_error",
    "message_text",
    "model_ids",
    "parse_sse",
    "sse_data",
    "sse_data_lines",
]
