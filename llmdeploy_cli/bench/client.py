"""One streaming chat completion, timed chunk by chunk (httpx, no retries).

httpx is used directly (DESIGN.md §6): the OpenAI SDK retries twice by default, which
hides failures, and httpx's default pool caps at 100 connections, which would cap the
concurrency silently. The caller builds the client with `make_client`, whose pool limit is
at least the concurrency, and whose transport never retries.

Every failure gets a class (connect, timeout, http_404, http_500, disconnected,
bad_stream, empty_answer, interrupted, ...) so a report can count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING

from llmdeploy_cli.bench.metrics import RequestRecord

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from llmdeploy_cli.bench.workload import Prompt, Tokenizer

now = time.monotonic


def make_client(max_connections: int, timeout: float, api_key: str | None = None):
    import httpx

    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    headers = {"Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.AsyncClient(
        limits=limits,
        # pool=None: waiting for a free connection is the bench's own queueing (the
        # concurrency cap already bounds it), never a request failure.
        timeout=httpx.Timeout(connect=10.0, read=timeout, write=30.0, pool=None),
        transport=httpx.AsyncHTTPTransport(retries=0, limits=limits),
        headers=headers,
        trust_env=False,  # a proxy variable must not reroute a loopback bench
    )


def request_body(model: str, prompt: Prompt, force_output_len: bool) -> dict:
    body: dict = {
        "model": model,
        "messages": prompt.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if prompt.output_len:
        body["max_tokens"] = prompt.output_len
        if force_output_len:
            # vLLM / SGLang sampling extensions: generate exactly max_tokens.
            body["ignore_eos"] = True
            body["min_tokens"] = prompt.output_len
    return body


def _delta_kinds(delta: dict) -> tuple[set[str], str]:
    kinds: set[str] = set()
    text = ""
    content = delta.get("content")
    if content:
        kinds.add("content")
        text += content
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if reasoning:
        kinds.add("reasoning")
        text += reasoning
    if delta.get("tool_calls"):
        kinds.add("tool_calls")
        for call in delta["tool_calls"]:
            fn = (call or {}).get("function") or {}
            text += (fn.get("name") or "") + (fn.get("arguments") or "")
    return kinds, text


async def _sse_lines(resp):
    """(arrival time, line) for each line of an SSE stream.

    The time is taken when the bytes that complete the line arrive, before any parsing, so
    events that came in one read share one time and parsing never delays a stamp.
    """
    buf = b""
    async for raw in resp.aiter_bytes():
        t = now()
        buf += raw
        if b"\n" not in raw:
            continue
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield t, line.rstrip(b"\r").decode("utf-8", "replace")
    if buf.strip():
        yield now(), buf.rstrip(b"\r").decode("utf-8", "replace")


def _tracer(rec: RequestRecord):
    """httpcore's trace hook: stamp `rec.written` when the request headers start going out."""

    async def trace(event: str, info: dict) -> None:
        if event == "http11.send_request_headers.started":
            rec.written = now()

    return trace


def _error_message(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip()[:300] or f"HTTP {status}"
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail") or json.dumps(err)
    else:
        msg = str(err)
    return str(msg)[:300]


async def send(
    client: httpx.AsyncClient,
    url: str,
    body: dict,
    rec: RequestRecord,
    tokenizer: Tokenizer | None = None,
    prompt_len: int | None = None,
) -> RequestRecord:
    """Send one request and fill `rec` in place. Never raises except for cancellation."""
    import httpx

    headers = {"x-request-id": rec.request_id} if rec.request_id else None
    rec.sent = now()
    try:
        async with client.stream(
            "POST", url, json=body, headers=headers, extensions={"trace": _tracer(rec)}
        ) as resp:
            rec.status = resp.status_code
            if resp.status_code != 200:
                raw = await resp.aread()
                rec.error_class = f"http_{resp.status_code}"
                rec.error = _error_message(resp.status_code, raw)
                rec.done = now()
                return rec
            usage = None
            finished = None
            async with contextlib.aclosing(_sse_lines(resp)) as stream:
                async for t, line in stream:
                    if finished is not None or not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        # read on to the end of the body (a few bytes at most): a response
                        # left unread makes httpx close the connection instead of reusing it
                        finished = t
                        continue
                    try:
                        data = json.loads(payload)
                    except ValueError:
                        rec.error_class, rec.error = "bad_stream", f"not JSON: {payload[:200]}"
                        rec.done = now()
                        return rec
                    if not isinstance(data, dict):
                        continue
                    choices = data.get("choices")
                    if choices:
                        if rec.first_chunk is None:
                            rec.first_chunk = t
                        rec.last_choice = t
                        choice = choices[0] or {}
                        kinds, text = _delta_kinds(choice.get("delta") or {})
                        if kinds:
                            if rec.first_content is None:
                                rec.first_content = t
                            rec.content_times.append(t)
                            rec.kinds |= kinds
                            rec.text += text
                        if choice.get("finish_reason"):
                            rec.finish_reason = choice["finish_reason"]
                    elif data.get("error"):
                        err = data["error"]
                        rec.error_class = "stream_error"
                        rec.error = str(err.get("message") if isinstance(err, dict) else err)[:300]
                        rec.done = now()
                        return rec
                    if data.get("usage"):
                        usage = data["usage"]
            rec.done = finished if finished is not None else now()
    except asyncio.CancelledError:
        rec.error_class, rec.error = "interrupted", "stopped before the answer ended"
        rec.done = now()
        raise
    except (httpx.HTTPError, OSError) as e:
        rec.error_class, rec.error = transport_failure(e)
    if rec.error_class:
        rec.done = rec.done or now()
        return rec
    if rec.first_content is None:
        rec.error_class = "empty_answer"
        rec.error = "the stream ended without a chunk carrying content, reasoning or tool calls"
        return rec
    rec.ok = True
    _count_tokens(rec, usage, tokenizer, prompt_len)
    return rec


def transport_failure(e: BaseException) -> tuple[str, str]:
    """(error class, message) for a request that failed below HTTP."""
    import httpx

    if isinstance(e, httpx.ConnectTimeout):
        return "connect_timeout", str(e) or "connect timed out"
    if isinstance(e, httpx.ConnectError):
        return "connect", str(e) or "connection refused"
    if isinstance(e, httpx.TimeoutException):
        return "timeout", str(e) or type(e).__name__
    if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "disconnected", str(e) or type(e).__name__
    if isinstance(e, httpx.HTTPError):
        return type(e).__name__, str(e)
    return "os_error", str(e)  # sockets failing under httpx


def embeddings_body(model: str, texts: list[str]) -> dict:
    return {"model": model, "input": texts, "encoding_format": "float"}


async def send_embeddings(
    client: httpx.AsyncClient, url: str, body: dict, rec: RequestRecord
) -> RequestRecord:
    """POST /v1/embeddings (not streamed) and fill `rec`: E2E ends when the body is read.

    `rec.prompt_tokens` comes from `usage.prompt_tokens`; an answer whose `data` does not
    hold one vector per input is a failure (`bad_answer`). Never raises except cancellation.
    """
    import httpx

    headers = {"x-request-id": rec.request_id} if rec.request_id else None
    rec.sent = now()
    try:
        resp = await client.post(
            url, json=body, headers=headers, extensions={"trace": _tracer(rec)}
        )
        rec.done = rec.last_choice = now()
        rec.status = resp.status_code
        if resp.status_code != 200:
            rec.error_class = f"http_{resp.status_code}"
            rec.error = _error_message(resp.status_code, resp.content)
            return rec
        try:
            doc = resp.json()
        except ValueError:
            rec.error_class, rec.error = "bad_answer", f"not JSON: {resp.text[:200]}"
            return rec
    except asyncio.CancelledError:
        rec.error_class, rec.error = "interrupted", "stopped before the answer ended"
        rec.done = now()
        raise
    except (httpx.HTTPError, OSError) as e:
        rec.error_class, rec.error = transport_failure(e)
    if rec.error_class:
        rec.done = rec.done or now()
        return rec
    data = doc.get("data") if isinstance(doc, dict) else None
    want = len(body["input"])
    if not isinstance(data, list) or len(data) != want:
        got = len(data) if isinstance(data, list) else "no"
        rec.error_class = "bad_answer"
        rec.error = f"asked for {want} embeddings, got {got} (answer: {str(doc)[:200]})"
        return rec
    rec.ok = True
    rec.inputs = want
    usage = doc.get("usage") if isinstance(doc, dict) else None
    pt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(pt, int) and pt > 0:
        rec.prompt_tokens, rec.prompt_source = pt, "usage"
    return rec


def _count_tokens(rec: RequestRecord, usage, tokenizer, prompt_len) -> None:
    ct = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if isinstance(ct, int) and ct > 0:
        rec.output_tokens, rec.token_source = ct, "usage"
    elif tokenizer is not None:
        rec.output_tokens, rec.token_source = tokenizer.count(rec.text), "tokenizer"
    else:
        rec.output_tokens, rec.token_source = len(rec.content_times), "chunks"
    pt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(pt, int) and pt > 0:
        rec.prompt_tokens, rec.prompt_source = pt, "usage"
    elif prompt_len:
        rec.prompt_tokens, rec.prompt_source = prompt_len, "local"


__all__ = ["embeddings_body", "make_client", "now", "request_body", "send", "send_embeddings"]
