"""smoke's chat checks: one plain and one streamed completion, and the expectations."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

from llmdeploy_cli.errors import LlmctlError
from llmdeploy_cli.openai_http.wire import (
    DONE,
    TEXT_FIELDS,
    SSEDecoder,
    delta_parts,
    error_text,
    loads,
    message_text,
)
from llmdeploy_cli.smoke.report import Exchange
from llmdeploy_cli.smoke.transport import (
    _Ctx,
    _raise_for_status,
    _server_error,
    _timed_post,
    _transport_error,
)

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.profile import SmokeSpec


def _messages(spec: SmokeSpec) -> list[dict]:
    msgs = []
    if spec.system_prompt:
        msgs.append({"role": "system", "content": spec.system_prompt})
    msgs.append({"role": "user", "content": spec.prompt})
    return msgs


def chat_body(model: str, spec: SmokeSpec, *, stream: bool = False) -> dict:
    """The request body: only parameters that apply (temperature 0 = greedy, no top_p/k)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(spec),
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _chat(ctx: _Ctx, spec: SmokeSpec) -> None:
    url = ctx.url("/chat/completions")
    body = chat_body(ctx.endpoint.model, spec)
    r, x = _timed_post(ctx, "chat", url, body)
    try:
        doc = r.json()
        choice = doc["choices"][0]
        msg = choice.get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        ctx.check("chat: answer", "fail", f"not a chat completion: {r.text[:200]!r}")
        return
    x.text, x.text_fields = message_text(msg)
    x.finish_reason = choice.get("finish_reason")
    x.usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    _answer_checks(ctx, spec, x, "chat")


def _completion(ctx: _Ctx, spec: SmokeSpec) -> None:
    """The legacy route: one POST /v1/completions with the smoke's prompt as plain text, so a
    client still on the completions API is checked too."""
    url = ctx.url("/completions")
    body = {
        "model": ctx.endpoint.model,
        "prompt": spec.prompt,
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
    }
    r, x = _timed_post(ctx, "completions", url, body)
    try:
        doc = r.json()
        choice = doc["choices"][0]
        text = choice.get("text")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        ctx.check("completions: answer", "fail", f"not a text completion: {r.text[:200]!r}")
        return
    x.text = text if isinstance(text, str) else ""
    x.text_fields = ["text"] if x.text else []
    x.finish_reason = choice.get("finish_reason")
    x.usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    _answer_checks(ctx, spec, x, "completions")


def _answer_checks(ctx: _Ctx, spec: SmokeSpec, x: Exchange, label: str) -> None:
    if x.text:
        ctx.check(f"{label}: answer", "pass", f"{len(x.text)} chars in {'+'.join(x.text_fields)}")
        if not x.text.strip():
            ctx.warn(f"{label}: the answer is whitespace only")
    else:
        ctx.check(
            f"{label}: answer",
            "fail",
            "empty: no text"
            if label == "completions"
            else "empty: no content, reasoning or tool calls",
        )
    if x.finish_reason:
        ctx.check(f"{label}: finish_reason", "pass", str(x.finish_reason))
    else:
        ctx.check(f"{label}: finish_reason", "fail", "missing")
    tokens = x.completion_tokens()
    if x.usage is None:
        ctx.check(f"{label}: usage", "warn", "the server sent no usage")
        ctx.warn(f"{label}: the server sent no usage; token counts are unknown")
    elif tokens is None:
        ctx.check(f"{label}: usage", "warn", f"usage without completion_tokens: {x.usage}")
        ctx.warn(f"{label}: usage has no completion_tokens")
    else:
        ctx.check(f"{label}: usage", "pass", f"{x.prompt_tokens()} prompt + {tokens} completion")
        if tokens > spec.max_tokens:
            ctx.warn(f"{label}: {tokens} tokens generated, max_tokens was {spec.max_tokens}")


# -- streaming --------------------------------------------------------------------------------


def _stream(ctx: _Ctx, spec: SmokeSpec, body: dict | None = None) -> None:
    import httpx

    url = ctx.url("/chat/completions")
    if body is None:
        body = chat_body(ctx.endpoint.model, spec, stream=True)
    x = Exchange("stream")
    ctx.report.exchanges.append(x)
    t0 = time.monotonic()
    parts: dict[str, list[str]] = {f: [] for f in TEXT_FIELDS}
    finish_seen = False
    role_after_text = False
    try:
        with ctx.client.stream("POST", url, json=body) as r:
            if r.status_code >= 400:
                r.read()
                text = _server_error(r)
                if (
                    r.status_code in (400, 422)
                    and "stream_options" in body
                    and ("stream_options" in text)
                ):
                    # An older server refusing stream_options: say so, send once without it.
                    ctx.warn("the server refused stream_options; streamed without it")
                    ctx.no_stream_options = True
                    ctx.report.exchanges.remove(x)
                    retry = {k: v for k, v in body.items() if k != "stream_options"}
                    return _stream(ctx, spec, retry)
                _raise_for_status(ctx, r, url)
            dec = SSEDecoder()
            for raw in r.iter_bytes():
                now = time.monotonic() - t0
                for payload in dec.feed(raw):
                    finish_seen, role_after_text = _chunk(
                        ctx, x, parts, payload, now, finish_seen, role_after_text
                    )
            for payload in dec.close():
                finish_seen, role_after_text = _chunk(
                    ctx, x, parts, payload, time.monotonic() - t0, finish_seen, role_after_text
                )
    except httpx.TransportError as e:
        raise _transport_error(ctx, e, url) from None
    x.e2e_s = time.monotonic() - t0
    if x.chunks == 0:
        x.order_problems.append("no `data:` chunks came back: the server did not stream")
    _stream_finish(ctx, spec, x, parts, role_after_text)


def _chunk(
    ctx: _Ctx,
    x: Exchange,
    parts: dict[str, list[str]],
    payload: bytes,
    now: float,
    finish_seen: bool,
    role_after_text: bool,
) -> tuple[bool, bool]:
    """One SSE data payload of the stream: record it in `x`, note order problems."""
    if x.done_seen:
        x.order_problems.append("data after [DONE]")
        return finish_seen, role_after_text
    if payload == DONE:
        x.done_seen = True
        return finish_seen, role_after_text
    try:
        chunk = loads(payload)
    except ValueError:
        x.order_problems.append(f"a chunk is not JSON: {_excerpt(payload)!r}")
        return finish_seen, role_after_text
    if not isinstance(chunk, dict):
        x.order_problems.append(f"a chunk is not an object: {_excerpt(payload)!r}")
        return finish_seen, role_after_text
    if chunk.get("error"):
        raise LlmctlError(
            f"the stream carried an error: {error_text(chunk)}",
            hint="see the server's log (llmctl logs NAME)",
        )
    x.chunks += 1
    if x.first_chunk_s is None:
        x.first_chunk_s = now
    if isinstance(chunk.get("usage"), dict):
        x.usage = chunk["usage"]
    choices = chunk.get("choices") or []
    if not choices:
        return finish_seen, role_after_text
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    got = delta_parts(delta)
    for f, piece in got:
        parts[f].append(piece)
    if got:
        x.text_chunks += 1
        if x.ttft_s is None:
            x.ttft_s = now
        if finish_seen:
            x.order_problems.append("text after the finish_reason chunk")
    if delta.get("role") and x.text_chunks and not got:
        role_after_text = True
    if choice.get("finish_reason"):
        if finish_seen and got:
            x.order_problems.append("finish_reason sent twice")
        elif finish_seen:
            # Xinference 4.x closes with a second, empty chunk ("length" then "stop"):
            # harmless to a client; keep the first reason.
            second = choice["finish_reason"]
            ctx.warn(
                f"stream: a second finish_reason ({second!r}) came in an empty chunk; "
                "kept the first"
            )
        else:
            x.finish_reason = choice["finish_reason"]
        finish_seen = True
    return finish_seen, role_after_text


def _excerpt(payload: bytes) -> str:
    return payload[:80].decode("utf-8", "replace")


def _stream_finish(
    ctx: _Ctx, spec: SmokeSpec, x: Exchange, parts: dict[str, list[str]], role_after_text: bool
) -> None:
    x.text_fields = [f for f in TEXT_FIELDS if parts[f]]
    x.text = "".join("".join(parts[f]) for f in x.text_fields[:1])
    _answer_checks(ctx, spec, x, "stream")
    if x.order_problems:
        ctx.check("stream: order", "fail", "; ".join(dict.fromkeys(x.order_problems)))
    else:
        detail = "role/text chunks, then finish"
        if x.done_seen:
            detail += ", then [DONE]"
        ctx.check("stream: order", "pass", detail)
    if role_after_text:
        ctx.warn("stream: a role chunk came after text")
    if not x.done_seen:
        ctx.warn("stream: no [DONE] at the end (transformers serve never sends one)")


def _expectations(ctx: _Ctx, spec: SmokeSpec) -> None:
    exp = spec.expect
    x = ctx.report.exchange("chat")
    if x is None or (exp.regex is None and not exp.json_):
        return
    text = x.text
    if exp.regex is not None:
        if re.search(exp.regex, text):
            ctx.check("expect: regex", "pass", f"/{exp.regex}/ matched")
        else:
            ctx.check("expect: regex", "fail", f"/{exp.regex}/ not found in {text[:80]!r}")
    if exp.json_:
        candidate = _strip_fence(text)
        try:
            json.loads(candidate)
        except ValueError as e:
            ctx.check("expect: json", "fail", f"the answer is not JSON ({e}): {text[:80]!r}")
        else:
            ctx.check("expect: json", "pass", "the answer parses as JSON")
    if exp.embedding_dim is not None:
        ctx.warn("expect.embedding_dim applies to embedding endpoints only; ignored")


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a ``` fence; accept that."""
    m = re.fullmatch(r"\s*```(?:json)?\s*\n(.*?)\n?```\s*", text, re.S)
    return m.group(1) if m else text
