"""The OpenAI wire format as pure functions: SSE parsing at any split, delta text, errors."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from llmdeploy_cli.openai_http.wire import (
    SSEDecoder,
    body_error_text,
    delta_parts,
    error_text,
    looks_like_model_error,
    message_text,
    model_ids,
    parse_sse,
    sse_data,
    sse_data_lines,
)

STREAM = (
    b'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\n'
    b": keep-alive comment\n\n"
    b"event: message\nid: 7\n"
    b'data: {"choices": [{"delta": {"content": "hi"}}]}\r\n\r\n'
    b"data: line one\ndata:line two\n\n"
    b"data: [DONE]\n\n"
)
PAYLOADS = [
    b'{"choices": [{"delta": {"role": "assistant"}}]}',
    b'{"choices": [{"delta": {"content": "hi"}}]}',
    b"line one\nline two",
    b"[DONE]",
]


def test_sse_events_fields_comments_and_line_endings():
    assert parse_sse(STREAM) == PAYLOADS
    # CR-only line ends, and an event left open when the stream ends
    assert parse_sse(b"data: a\r\rdata: b") == [b"a", b"b"]
    # a blank line with no data dispatches nothing
    assert parse_sse(b"\n\n: c\n\nretry: 5\n\n") == []


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_sse_any_split_gives_the_same_events(cuts):
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert list(sse_data(chunks)) == PAYLOADS


def test_sse_over_lines_gives_the_same_events():
    lines = STREAM.decode().replace("\r\n", "\n").split("\n")
    assert list(sse_data_lines(lines)) == PAYLOADS
    assert list(sse_data_lines([b"data: a", b"", b"data: b"])) == [b"a", b"b"]


def test_sse_decoder_delivers_an_event_as_soon_as_its_blank_line_arrives():
    d = SSEDecoder()
    assert d.feed(b"data: x\n") == []
    assert d.feed(b"\n") == [b"x"]
    assert d.feed(b"data: y\r") == []  # may be half of a CRLF
    assert d.feed(b"\n\r\n") == [b"y"]
    assert d.close() == []


def test_delta_text_fields_and_kinds():
    assert delta_parts({"role": "assistant", "content": ""}) == []
    assert delta_parts({"content": "hi"}) == [("content", "hi")]
    assert delta_parts({"reasoning_content": "hm"}) == [("reasoning_content", "hm")]
    assert delta_parts({"reasoning": "hm"}) == [("reasoning", "hm")]
    # one text under both names counts once
    assert delta_parts({"reasoning_content": "a", "reasoning": "a"}) == [("reasoning_content", "a")]
    call = {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}
    assert delta_parts(call) == [("tool_calls", "f{}")]


def test_a_message_text_is_its_deltas_joined():
    deltas = [
        {"tool_calls": [{"index": 0, "function": {"name": "get", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
    ]
    streamed = "".join(t for d in deltas for _, t in delta_parts(d))
    msg = {"tool_calls": [{"function": {"name": "get", "arguments": '{"city":"Oslo"}'}}]}
    assert message_text(msg) == (streamed, ["tool_calls"])
    reasoning_only = {"content": None, "reasoning_content": "why"}
    assert message_text(reasoning_only) == ("why", ["reasoning_content"])


def test_error_text_in_every_shape():
    assert error_text({"error": {"message": "bad model", "type": "x"}}) == "bad model"
    assert error_text({"error": "plain"}) == "plain"
    assert error_text({"detail": "Not Found"}) == "Not Found"
    assert error_text({"detail": [{"loc": ["body"], "msg": "field required"}]}) == "field required"
    assert error_text({"message": "m"}) == "m"
    assert error_text({"status": "loading model"}) == "loading model"
    assert error_text(["odd"]) == json.dumps(["odd"])
    assert body_error_text(b'{"error": {"message": "Loading model"}}', 503) == "Loading model"
    assert body_error_text(b"Internal Server Error\n", 500) == "Internal Server Error"
    assert body_error_text(b"", 502) == "HTTP 502"
    assert len(body_error_text(b"x" * 1000, 500)) == 300


def test_model_errors_and_model_lists():
    assert looks_like_model_error(404, "", "m")
    assert looks_like_model_error(400, "The model `m` does not exist.", "m")
    assert looks_like_model_error(422, "model is pinned to other", "x")
    assert not looks_like_model_error(400, "max_tokens too large", "m")
    assert not looks_like_model_error(500, "model not found", "m")
    assert model_ids({"data": [{"id": "a"}, {"id": 2}, {"x": 1}]}) == ["a", "2"]
    assert model_ids({"object": "list"}) is None
