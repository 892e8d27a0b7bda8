"""smoke's SDK pass: one plain and one streamed chat completion through the `openai` SDK.

Our own checks parse tolerantly; users' clients mostly run the official SDK. So once the
own checks pass, the same two requests go through `openai.OpenAI` (imported here only;
`max_retries=0`, so a failure is never hidden behind a retry; the smoke's timeout per
request, connecting capped at 10 s; the same proxy rule as every other request).

Fails the smoke (check `sdk: chat` / `sdk: stream`):
- the SDK raises on either call (its own error text: a status it refuses, a body or chunk
  it cannot decode, an error event in the stream, a dropped connection);
- the plain answer has no choices, or its `message.content` is not a string (or null), so
  `completion.choices[0].message.content` hands a client something else;
- the SDK's view of either answer carries no text although our own parser found some.

Warnings only (the SDK does not validate stream chunks, so a client may cope): a stream
chunk whose `delta.content` is not a string, and a stream without a usage chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdeploy_cli.openai_http.wire import delta_parts, message_text

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.profile import SmokeSpec
    from llmdeploy_cli.smoke.transport import _Ctx


def sdk_pass(ctx: _Ctx, spec: SmokeSpec, api_key: str | None) -> None:
    if not ctx.report.ok:
        ctx.check("sdk", "skip", "the checks above failed; the SDK pass would only repeat them")
        return
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a dependency
        ctx.check("sdk", "skip", "the openai package is not installed")
        ctx.warn("the openai package is not installed: the SDK pass was skipped")
        return
    from llmdeploy_cli.openai_http.clients import sync_client
    from llmdeploy_cli.smoke.chat import chat_body

    base = ctx.report.base_url
    t = ctx.timeout
    kw = chat_body(ctx.endpoint.model, spec)  # the same request as the plain chat check
    with (
        sync_client(base, timeout=t, max_connections=2) as http,
        openai.OpenAI(
            base_url=base,
            api_key=api_key or "EMPTY",  # the SDK insists on a key; servers without auth ignore it
            max_retries=0,
            timeout=openai.Timeout(t, connect=min(t, 10.0)),
            http_client=http,
        ) as client,
    ):
        _plain(ctx, client, kw, openai)
        _streamed(ctx, client, kw, openai)


def _sdk_error(e: BaseException) -> str:
    text = str(e).strip() or "(no message)"
    return f"the openai SDK raised {type(e).__name__}: {text[:300]}"


_FAILS = (ValueError, TypeError, AttributeError, KeyError, IndexError)


def _plain(ctx: _Ctx, client, kw: dict, openai) -> None:
    name = "sdk: chat"
    try:
        r = client.chat.completions.create(**kw)
        choices = r.choices
        if not isinstance(choices, list) or not choices:
            ctx.check(name, "fail", "the SDK's completion has no choices")
            return
        msg = choices[0].message
        content = msg.content
        doc = msg.model_dump(warnings=False)
    except (openai.OpenAIError, *_FAILS) as e:
        ctx.check(name, "fail", _sdk_error(e))
        return
    if content is not None and not isinstance(content, str):
        ctx.check(
            name,
            "fail",
            f"choices[0].message.content is a {type(content).__name__}, not a string: "
            "a client reading .content gets no text",
        )
        return
    text, fields = message_text(doc)
    if not text:
        ctx.check(name, "fail", "the SDK's message carries no text (content, reasoning, tools)")
        return
    ctx.check(name, "pass", f"{len(text)} chars in {'+'.join(fields)}")


def _streamed(ctx: _Ctx, client, kw: dict, openai) -> None:
    name = "sdk: stream"
    extra = {} if ctx.no_stream_options else {"stream_options": {"include_usage": True}}
    chunks = 0
    text: list[str] = []
    odd: str | None = None
    usage = False
    try:
        stream = client.chat.completions.create(**kw, stream=True, **extra)
        with stream:
            for chunk in stream:
                chunks += 1
                if getattr(chunk, "usage", None) is not None:
                    usage = True
                choices = chunk.choices or []
                if not choices:
                    continue
                delta = choices[0].delta
                if delta is None:
                    continue
                if delta.content is not None and not isinstance(delta.content, str):
                    odd = f"delta.content is a {type(delta.content).__name__}, not a string"
                text += [t for _, t in delta_parts(delta.model_dump(warnings=False))]
    except (openai.OpenAIError, *_FAILS) as e:
        ctx.check(name, "fail", _sdk_error(e))
        return
    if not text:
        ctx.check(name, "fail", f"the SDK read {chunks} chunks and no text from the stream")
        return
    if odd:
        ctx.warn(f"sdk: stream: {odd} (the SDK does not validate stream chunks)")
    if not usage and not ctx.no_stream_options:
        ctx.warn("sdk: stream: no usage chunk came through the SDK")
    ctx.check(name, "pass", f"{chunks} chunks, {len(''.join(text))} chars")
