"""One streaming chat completion (or one embeddings request), timed chunk by chunk.

The transport is aiohttp on uvloop with orjson (llmdeploy_cli.openai_http; chosen by
measurement, docs/benchmarks.md): no retries, a pool as large as the concurrency (a smaller
pool would cap the concurrency silently), a read timeout rather than a total one. SSE
parsing, delta text and error text come from `openai_http.wire`, transport failures are
classified by `openai_http.failures`; proxy variables apply to remote URLs only.

Times: `rec.sent` when the request is handed to the client, `rec.written` when its bytes
are handed to the socket (a trace hook: a busy event loop holding a request inside the
client counts as send lag), and every chunk's arrival stamped when the bytes that complete
it are read, before any parsing, so events that came in one read share one time.

Every failure gets a class (connect, timeout, http_404, http_500, disconnected,
bad_stream, empty_answer, interrupted, ...) so a report can count them.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from llmdeploy_cli.bench.metrics import RequestRecord
from llmdeploy_cli.openai_http.clients import post
from llmdeploy_cli.openai_http.failures import classify
from llmdeploy_cli.openai_http.wire import (
    DONE,
    FIELD_KIND,
    SSEDecoder,
    body_error_text,
    delta_parts,
    dumps,
    error_text,
    loads,
    model_ids,
)

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

    from llmdeploy_cli.bench.workload import Prompt, Tokenizer

now = time.monotonic
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


def _stamp_written(rec) -> None:
    if rec is not None and rec.written is None:  # the first write of the request
        rec.written = now()


def make_client(
    max_connections: int, timeout: float, api_key: str | None = None, url: str = ""
) -> aiohttp.ClientSession:
    """The bench's session (open it with `async with` inside the running loop). `url`
    decides the proxy rule: proxy variables apply to remote URLs, never to loopback."""
    from llmdeploy_cli.openai_http.clients import async_session

    return async_session(
        url,
        max_connections=max_connections,
        timeout=timeout,
        api_key=api_key,
        headers=JSON_HEADERS,
        on_request_sent=_stamp_written,
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
    """(kinds of text the delta carries, its text): see openai_http.wire.delta_parts."""
    parts = delta_parts(delta)
    return {FIELD_KIND[f] for f, _ in parts}, "".join(t for _, t in parts)


def _headers(rec: RequestRecord) -> dict | None:
    return {"x-request-id": rec.request_id} if rec.request_id else None


class _Stream:
    """The SSE handling of one streamed answer: feed(payload, t) -> False to stop reading."""

    __slots__ = ("rec", "usage", "finished")

    def __init__(self, rec: RequestRecord):
        self.rec = rec
        self.usage = None
        self.finished: float | None = None

    def feed(self, payload: bytes, t: float) -> bool:
        rec = self.rec
        if self.finished is not None:
            return True
        if payload == DONE:
            # read on to the end of the body (a few bytes at most): a response left
            # unread closes the connection instead of returning it to the pool
            self.finished = t
            return True
        try:
            data = loads(payload)
        except ValueError:
            return self._bad("not JSON", payload)
        if not isinstance(data, dict):
            return True
        choices = data.get("choices")
        if choices:
            try:
                choice = choices[0] or {}
                delta = choice.get("delta")
                kinds, text = _delta_kinds(delta) if delta else (None, "")
            except (AttributeError, KeyError, TypeError):
                return self._bad("not a chat completion chunk", payload)
            if rec.first_chunk is None:
                rec.first_chunk = t
            rec.last_choice = t
            if kinds:
                if rec.first_content is None:
                    rec.first_content = t
                rec.content_times.append(t)
                rec.kinds |= kinds
                rec.text += text
            if choice.get("finish_reason"):
                rec.finish_reason = choice["finish_reason"]
        elif data.get("error"):
            rec.error_class = "stream_error"
            rec.error = error_text(data)
            rec.done = now()
            return False
        if data.get("usage"):
            self.usage = data["usage"]
        return True

    def _bad(self, what: str, payload: bytes) -> bool:
        """A chunk that is not what an OpenAI stream carries: the request fails."""
        rec = self.rec
        rec.error_class = "bad_stream"
        rec.error = f"{what}: {payload[:200].decode('utf-8', 'replace')}"
        rec.done = now()
        return False


async def send(
    client: aiohttp.ClientSession,
    url: str,
    body: dict,
    rec: RequestRecord,
    tokenizer: Tokenizer | None = None,
    prompt_len: int | None = None,
) -> RequestRecord:
    """Send one request and fill `rec` in place. Never raises except for cancellation."""
    import aiohttp

    data = dumps(body)
    st = _Stream(rec)
    rec.sent = now()
    try:
        async with post(
            client, url, data=data, headers=_headers(rec), trace_request_ctx=rec
        ) as resp:
            rec.status = resp.status
            if resp.status != 200:
                raw = await resp.read()
                rec.error_class = f"http_{resp.status}"
                rec.error = body_error_text(raw, resp.status)
                rec.done = now()
                return rec
            dec = SSEDecoder()
            feed = st.feed
            async for raw in resp.content.iter_any():
                t = now()
                for payload in dec.feed(raw):
                    if not feed(payload, t):
                        return rec
            t = now()
            for payload in dec.close():
                if not feed(payload, t):
                    return rec
            rec.done = st.finished if st.finished is not None else now()
    except asyncio.CancelledError:
        rec.error_class, rec.error = "interrupted", "stopped before the answer ended"
        rec.done = now()
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        rec.error_class, rec.error = transport_failure(e)
    if rec.error_class:
        rec.done = rec.done or now()
        return rec
    if rec.first_content is None:
        rec.error_class = "empty_answer"
        rec.error = "the stream ended without a chunk carrying content, reasoning or tool calls"
        return rec
    rec.ok = True
    _count_tokens(rec, st.usage, tokenizer, prompt_len)
    return rec


def transport_failure(e: BaseException) -> tuple[str, str]:
    """(error class, message) for a request that failed below HTTP."""
    f = classify(e)
    return f.kind, f.message


async def list_models(client: aiohttp.ClientSession, base_url: str) -> list[str] | None:
    """GET {base_url}/models: the ids, or None when there is no model list. A refused
    connection raises ConnectionRefusedError (the caller says it is unreachable)."""
    doc = await models_doc(client, base_url)
    return None if doc is None else model_ids(doc)


def context_length(doc, model: str) -> int | None:
    """The context length the server gives for `model` in its /v1/models answer, where it
    says one (vLLM and SGLang: `max_model_len`)."""
    data = doc.get("data") if isinstance(doc, dict) else None
    for m in data if isinstance(data, list) else []:
        if isinstance(m, dict) and m.get("id") == model:
            n = m.get("max_model_len")
            return n if isinstance(n, int) and n > 0 else None
    return None


async def models_doc(client: aiohttp.ClientSession, base_url: str):
    """The decoded GET {base_url}/models answer, or None (see list_models)."""
    import aiohttp

    try:
        async with client.get(
            base_url.rstrip("/") + "/models", timeout=aiohttp.ClientTimeout(total=10.0)
        ) as r:
            if r.status != 200:
                return None
            raw = await r.read()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        if classify(e).kind == "connect":
            raise ConnectionRefusedError(str(e)) from None
        return None
    try:
        return loads(raw)
    except ValueError:
        return None


def embeddings_body(model: str, texts: list[str]) -> dict:
    return {"model": model, "input": texts, "encoding_format": "float"}


async def send_embeddings(
    client: aiohttp.ClientSession, url: str, body: dict, rec: RequestRecord
) -> RequestRecord:
    """POST /v1/embeddings (not streamed) and fill `rec`: E2E ends when the body is read.

    `rec.prompt_tokens` comes from `usage.prompt_tokens`; an answer whose `data` does not
    hold one vector per input is a failure (`bad_answer`). Never raises except cancellation.
    """
    import aiohttp

    data = dumps(body)
    rec.sent = now()
    try:
        async with post(
            client, url, data=data, headers=_headers(rec), trace_request_ctx=rec
        ) as resp:
            raw = await resp.read()
            rec.done = rec.last_choice = now()
            rec.status = resp.status
        if rec.status != 200:
            rec.error_class = f"http_{rec.status}"
            rec.error = body_error_text(raw, rec.status)
            return rec
        try:
            doc = loads(raw)
        except ValueError:
            text = raw[:200].decode("utf-8", "replace")
            rec.error_class, rec.error = "bad_answer", f"not JSON: {text}"
            return rec
    except asyncio.CancelledError:
        rec.error_class, rec.error = "interrupted", "stopped before the answer ended"
        rec.done = now()
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        rec.error_class, rec.error = transport_failure(e)
    if rec.error_class:
        rec.done = rec.done or now()
        return rec
    data_ = doc.get("data") if isinstance(doc, dict) else None
    want = len(body["input"])
    if not isinstance(data_, list) or len(data_) != want:
        got = len(data_) if isinstance(data_, list) else "no"
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


__all__ = [
    "embeddings_body",
    "list_models",
    "make_client",
    "now",
    "request_body",
    "send",
    "send_embeddings",
    "transport_failure",
]
