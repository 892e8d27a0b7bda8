"""A STAND-IN for an OpenAI-compatible model server, for tests only. It runs no model.

Used only for what a real engine here cannot be made to show: a server that checks an API
key, a role-only first chunk followed by a pause, answers carried only in
`reasoning_content` (or `reasoning`, or tool calls), a server that omits usage or `[DONE]`,
a stream out of order, a 500, a 404 for an unknown model, embeddings. Everything else is
tested against a real `transformers serve`.

A stdlib ThreadingHTTPServer in a daemon thread:

    with OpenAIStandin(models=["m"], api_key="k", fault="reasoning") as s:
        s.base_url   # http://127.0.0.1:PORT/v1
        s.requests   # [(method, path, headers, body-dict), ...] as received

Shapes follow the OpenAI chat-completions API as vLLM serves it: errors are
{"error": {"message", "type", "code"}}, an unknown model is a 404, streaming chunks are
`data: {json}` lines ending with `data: [DONE]`, usage comes in a final chunk with empty
`choices` when `stream_options.include_usage` is set.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# fault: None (a well-behaved server) or one of
FAULTS = {
    "reasoning",  # content null, all text in reasoning_content
    "reasoning_field",  # content null, text in `reasoning` (newer vLLM)
    "tool_calls",  # content null, a tool call
    "no_usage",  # never sends usage
    "no_done",  # stream ends without [DONE]
    "empty",  # empty content, nothing else
    "no_finish",  # no finish_reason anywhere
    "text_after_finish",  # stream: a content chunk after the finish chunk
    "second_empty_finish",  # stream: a second, empty finish chunk (Xinference 4.x)
    "error500",  # every completion answers 500
    "reject_stream_options",  # 400 when stream_options is sent
    "stream_error",  # stream carries {"error": ...} mid-way
    "content_parts",  # plain answer: content as a list of parts, not a string
    "refuse_sdk",  # 400 to requests from the openai SDK (a gateway rule on its headers)
}


class OpenAIStandin:
    def __init__(
        self,
        models: list[str] | None = None,
        *,
        api_key: str | None = None,
        fault: str | None = None,
        answer: str = "Hello there.",
        first_text_delay: float = 0.0,
        embedding_dim: int = 8,
        list_models: bool = True,
    ):
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.models = list(models or ["standin-model"])
        self.api_key = api_key
        self.fault = fault
        self.answer = answer
        self.first_text_delay = first_text_delay
        self.embedding_dim = embedding_dim
        self.list_models = list_models
        self.requests: list[tuple[str, str, dict, dict | None]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> OpenAIStandin:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def bodies(self, path: str) -> list[dict]:
        return [b for (_m, p, _h, b) in self.requests if p == path and b is not None]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that hung up (a timeout test) is not an error here


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing ----------------------------------------------------------------------
    def _json(self, status: int, doc: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, typ: str) -> None:
        self._json(status, {"error": {"message": message, "type": typ, "code": status}})

    def _authorized(self) -> bool:
        key = self.owner.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._error(401, "Invalid API key", "AuthenticationError")
        return False

    def _body(self) -> dict | None:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    # -- routes -------------------------------------------------------------------------
    def do_GET(self) -> None:
        o = self.owner
        o.requests.append(("GET", self.path, dict(self.headers), None))
        if self.path == "/health":
            return self._json(200, {"status": "ok"})
        if not self._authorized():
            return None
        if self.path == "/v1/models" and o.list_models:
            data = [{"id": m, "object": "model", "owned_by": "standin"} for m in o.models]
            return self._json(200, {"object": "list", "data": data})
        return self._error(404, "Not Found", "NotFoundError")

    def do_POST(self) -> None:
        o = self.owner
        body = self._body()
        o.requests.append(("POST", self.path, dict(self.headers), body))
        if not self._authorized():
            return None
        if body is None:
            return self._error(400, "body is not JSON", "BadRequestError")
        model = body.get("model")
        if model not in o.models:
            return self._error(404, f"The model `{model}` does not exist.", "NotFoundError")
        if self.path == "/v1/embeddings":
            vec = [0.1 * (i + 1) for i in range(o.embedding_dim)]
            return self._json(
                200,
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": vec}],
                    "model": model,
                    "usage": {"prompt_tokens": 5, "total_tokens": 5},
                },
            )
        if self.path == "/v1/completions":
            return self._text_completion(body)
        if self.path != "/v1/chat/completions":
            return self._error(404, "Not Found", "NotFoundError")
        if o.fault == "error500":
            return self._error(500, "CUDA error: an illegal memory access", "InternalServerError")
        if o.fault == "refuse_sdk" and any(
            k.lower().startswith("x-stainless") for k in self.headers
        ):
            return self._error(400, "x-stainless-* headers are not allowed", "BadRequestError")
        if body.get("stream"):
            if o.fault == "reject_stream_options" and "stream_options" in body:
                return self._error(
                    400, "Unrecognized request argument: stream_options", "BadRequestError"
                )
            return self._stream(body)
        return self._complete(body)

    # -- answers ------------------------------------------------------------------------
    def _pieces(self) -> list[str]:
        words = self.owner.answer.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    def _text_key(self) -> str | None:
        f = self.owner.fault
        if f == "reasoning":
            return "reasoning_content"
        if f == "reasoning_field":
            return "reasoning"
        if f in ("tool_calls", "empty"):
            return None
        return "content"

    def _usage(self, n: int) -> dict | None:
        if self.owner.fault == "no_usage":
            return None
        return {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}

    def _tool_call(self) -> dict:
        return {
            "id": "call_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }

    def _text_completion(self, body: dict) -> None:
        """POST /v1/completions (the legacy route): the answer as `choices[0].text`."""
        doc = {
            "id": "cmpl-standin",
            "object": "text_completion",
            "model": body["model"],
            "choices": [{"index": 0, "text": self.owner.answer, "finish_reason": "stop"}],
        }
        usage = self._usage(len(self._pieces()))
        if usage is not None:
            doc["usage"] = usage
        self._json(200, doc)

    def _complete(self, body: dict) -> None:
        f = self.owner.fault
        msg: dict = {"role": "assistant", "content": None}
        key = self._text_key()
        if key is not None:
            msg[key] = self.owner.answer
        if f == "empty":
            msg["content"] = ""
        if f == "tool_calls":
            msg["tool_calls"] = [self._tool_call()]
        if f == "content_parts":
            msg["content"] = [{"type": "text", "text": self.owner.answer}]
        finish = None if f == "no_finish" else ("tool_calls" if f == "tool_calls" else "stop")
        doc = {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
        }
        usage = self._usage(len(self._pieces()))
        if usage is not None:
            doc["usage"] = usage
        self._json(200, doc)

    def _stream(self, body: dict) -> None:
        o = self.owner
        f = o.fault
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

        def chunk(delta: dict, finish=None, usage=None, choices=True) -> None:
            doc: dict = {"id": "chatcmpl-standin", "object": "chat.completion.chunk"}
            doc["model"] = body["model"]
            doc["choices"] = (
                [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []
            )
            if usage is not None:
                doc["usage"] = usage
            self.wfile.write(f"data: {json.dumps(doc)}\n\n".encode())
            self.wfile.flush()

        chunk({"role": "assistant", "content": ""})  # role-only first chunk, as vLLM sends
        if o.first_text_delay:
            time.sleep(o.first_text_delay)
        key = self._text_key()
        pieces = self._pieces()
        if f == "tool_calls":
            call = self._tool_call()
            chunk({"tool_calls": [{"index": 0, **call}]})
        elif key is not None:
            for i, p in enumerate(pieces):
                if f == "stream_error" and i == 1:
                    self.wfile.write(b'data: {"error": {"message": "engine died"}}\n\n')
                    self.wfile.flush()
                    return
                chunk({key: p})
        finish = None if f == "no_finish" else ("tool_calls" if f == "tool_calls" else "stop")
        chunk({}, finish=finish)
        if f == "text_after_finish":
            chunk({"content": " late"})
        if f == "second_empty_finish":  # Xinference 4.x: "length", then an empty "stop"
            chunk({}, finish="length")
        include = (body.get("stream_options") or {}).get("include_usage")
        usage = self._usage(len(pieces))
        if include and usage is not None:
            chunk({}, usage=usage, choices=False)
        if f != "no_done":
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
