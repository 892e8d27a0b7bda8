"""A stand-in OpenAI-compatible embeddings server (tests only; not Infinity, not vLLM).

POST /v1/embeddings with `{"model", "input": str | [str, ...]}` answers, after
`--latency-ms` plus `--per-input-ms` for each input, one `--dim`-long vector per input and
`usage.prompt_tokens` = the number of whitespace-separated words in all inputs (a known
count the test can check). GET /v1/models lists `--model`; any other model name gets 404.
`--fail-every K` answers every K-th embeddings request with 500. Every request is logged
for GET /requests as `{"inputs": n, "tokens": t}`.

Run: `python -m tests.standins.embed_server --port 0`; prints `READY <port>` once it listens.
`embed_standin(...)` does that from a test and always kills it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

from tests.standins import plumbing
from tests.standins.plumbing import CLOSED, read_request


class Server:
    def __init__(self, args):
        self.a = args
        self.count = 0
        self.requests: list[dict] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                method, path, _, body, _ = await read_request(reader)
                status, data = await self.route(method, path, body)
                payload = json.dumps(data).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except CLOSED:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def route(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": self.a.model, "object": "model"}]}
        if method == "GET" and path == "/requests":
            return 200, {"requests": self.requests}
        if method == "POST" and path == "/v1/embeddings":
            return await self.embeddings(json.loads(body or b"{}"))
        return 404, {"error": {"message": f"no route {path}"}}

    async def embeddings(self, req: dict) -> tuple[int, dict]:
        if req.get("model") != self.a.model:
            return 404, {"error": {"message": f"model {req.get('model')!r} not found"}}
        texts = req.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts:
            return 422, {"error": {"message": "input must be a string or a list of strings"}}
        self.count += 1
        if self.a.fail_every and self.count % self.a.fail_every == 0:
            return 500, {"error": {"message": "injected failure"}}
        await asyncio.sleep((self.a.latency_ms + self.a.per_input_ms * len(texts)) / 1000.0)
        tokens = sum(len(str(t).split()) for t in texts)
        self.requests.append({"inputs": len(texts), "tokens": tokens})
        vec = [round(1.0 / (i + 1), 4) for i in range(self.a.dim)]
        return 200, {
            "object": "list",
            "model": self.a.model,
            "data": [
                {"object": "embedding", "index": i, "embedding": vec} for i in range(len(texts))
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


async def serve(args) -> None:
    await plumbing.serve(Server(args).handle, args.host, args.port)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--model", default="embed-standin")
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--latency-ms", type=float, default=5.0)
    p.add_argument("--per-input-ms", type=float, default=1.0)
    p.add_argument("--fail-every", type=int, default=0)
    return p.parse_args(argv)


def embed_standin(*args: str):
    """Start the stand-in in its own process; yield (base_url, popen); always kill it."""
    return plumbing.launch("tests.standins.embed_server", *args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse()))
