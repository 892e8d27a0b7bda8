"""A stand-in OpenAI-compatible chat server with known, injected timings (tests only).

Not an engine: it streams `tokens` chunks of one word each, the first one `--ttft-ms` after
the request arrived and the next ones `--itl-ms` apart, on an absolute timeline (so a late
wake-up never shifts the later chunks). Like vLLM it first sends a role-only chunk
(`{"role": "assistant", "content": ""}`) at once, and puts `usage` in a final chunk with
no choices when `stream_options.include_usage` is set.

Server-side timestamps (time.monotonic(), the same clock as the client on Linux):
every chunk carries `"llmctl_stamp"`, and GET /stamps returns, per `x-request-id`,
`{"received": t, "role": t, "chunks": [t, ...]}` with `t` taken just before each write.

Fault injection: `--model` (404 for any other name), `--fail-every K --fail-status S`
(every K-th chat request answered S), `--die-after N` (the process exits halfway through
the N-th request's stream), `--strict` (400 for ignore_eos/min_tokens, like a server
that does not know vLLM's extensions), `--max-context N` (400 with vLLM's message when the
prompt's words plus max_tokens pass N), `--api-key K` (401 without it), `--reasoning N`
(the first N tokens come as `reasoning_content`, like a reasoning model).

Run: `python -m tests.standins.timed_server --port 0 --ttft-ms 50 --itl-ms 10`; it prints
`READY <port>` on stdout once it listens. `standin(...)` does that from a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time

from tests.standins import plumbing
from tests.standins.plumbing import CLOSED, read_request

now = time.monotonic


class Server:
    def __init__(self, args):
        self.a = args
        self.count = 0
        self.stamps: dict[str, dict] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                method, path, headers, body, received = await read_request(reader)
                await self.route(method, path, headers, body, received, writer)
        except CLOSED:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def json_reply(self, writer, status: int, data) -> None:
        payload = json.dumps(data).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(
            status, "Error"
        )
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()

    async def route(self, method, path, headers, body, received, writer) -> None:
        if method == "GET" and path == "/health":
            return await self.json_reply(writer, 200, {"status": "ok"})
        if self.a.api_key and headers.get("authorization") != f"Bearer {self.a.api_key}":
            return await self.json_reply(writer, 401, {"error": {"message": "bad api key"}})
        if method == "GET" and path == "/v1/models":
            return await self.json_reply(
                writer, 200, {"object": "list", "data": [self.model_entry()]}
            )
        if method == "GET" and path == "/stamps":
            return await self.json_reply(writer, 200, self.stamps)
        if method == "POST" and path == "/v1/chat/completions":
            return await self.chat(headers, body, received, writer)
        return await self.json_reply(writer, 404, {"error": {"message": f"no route {path}"}})

    def model_entry(self) -> dict:
        entry = {"id": self.a.model, "object": "model"}
        if self.a.max_context and self.a.list_context:  # as vLLM lists it
            entry["max_model_len"] = self.a.max_context
        return entry

    async def chat(self, headers, body, received, writer) -> None:
        req = json.loads(body or b"{}")
        if req.get("model") != self.a.model:
            return await self.json_reply(
                writer,
                404,
                {"error": {"message": f"The model `{req.get('model')}` does not exist."}},
            )
        if self.a.strict and ("ignore_eos" in req or "min_tokens" in req):
            return await self.json_reply(
                writer, 400, {"error": {"message": "unknown parameter: ignore_eos"}}
            )
        words = sum(len(str(m.get("content", "")).split()) for m in req.get("messages", []))
        # one word counts as one token here, or as --tokens-per-word tokens after a
        # 10-token chat template
        prompt_tokens = round(words * self.a.tokens_per_word) + 10 if self.a.tokens_per_word else 7
        if self.a.max_context:
            want = (prompt_tokens if self.a.tokens_per_word else words) + int(
                req.get("max_tokens") or 0
            )
            if want > self.a.max_context:
                msg = (
                    f"This model's maximum context length is {self.a.max_context} tokens. "
                    f"However, you requested {want} tokens."
                )
                return await self.json_reply(writer, 400, {"error": {"message": msg}})
        self.count += 1
        number = self.count
        if self.a.fail_every and number % self.a.fail_every == 0:
            return await self.json_reply(
                writer, self.a.fail_status, {"error": {"message": "injected failure"}}
            )
        tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or self.a.tokens)
        rid = headers.get("x-request-id") or f"anon-{number}"
        st = {"received": received, "role": None, "chunks": [], "max_tokens": tokens}
        self.stamps[rid] = st
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        base = {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion.chunk",
            "model": self.a.model,
        }

        async def event(data: dict | str) -> float:
            t = now()
            if isinstance(data, dict):
                data["llmctl_stamp"] = t
                data = json.dumps(data)
            raw = f"data: {data}\n\n".encode()
            writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            await writer.drain()
            return t

        st["role"] = await event(
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        )
        ttft = self.a.ttft_ms / 1000.0
        itl = self.a.itl_ms / 1000.0
        for k in range(tokens):
            target = received + ttft + k * itl
            delay = target - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.a.die_after and number == self.a.die_after and k >= tokens // 2:
                os._exit(3)
            last = k == tokens - 1
            field = "reasoning_content" if k < self.a.reasoning else "content"
            choice = {"index": 0, "delta": {field: f" w{k}"}, "finish_reason": None}
            if last:
                choice["finish_reason"] = "length"
            st["chunks"].append(await event({**base, "choices": [choice]}))
        if (req.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": prompt_tokens + tokens,
            }
            await event({**base, "choices": [], "usage": usage})
        await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def serve(args) -> None:
    await plumbing.serve(Server(args).handle, args.host, args.port)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--model", default="standin")
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--itl-ms", type=float, default=5.0)
    p.add_argument("--tokens", type=int, default=16, help="when the request sets no max_tokens")
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=500)
    p.add_argument("--die-after", type=int, default=0)
    p.add_argument("--strict", action="store_true")
    p.add_argument("--max-context", type=int, default=0, help="400 past N tokens (words)")
    p.add_argument("--list-context", action="store_true", help="max_model_len in /v1/models")
    p.add_argument(
        "--tokens-per-word", type=float, default=0.0, help="usage counts words*K + 10 tokens"
    )
    p.add_argument("--api-key", default=None, help="401 unless 'Authorization: Bearer KEY'")
    p.add_argument("--reasoning", type=int, default=0, help="first N tokens as reasoning")
    return p.parse_args(argv)


def standin(*args: str, python: str | None = None):
    """Start the stand-in in its own process; yield (base_url, popen); always kill it."""
    return plumbing.launch("tests.standins.timed_server", *args, python=python)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse()))
