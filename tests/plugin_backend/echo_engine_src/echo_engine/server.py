"""`echo-engine serve`: an OpenAI-compatible stand-in that answers with the prompt.

Standard library only. GET /health, GET /v1/models (the served name), POST
/v1/chat/completions (the last user message, prefixed by --reply-prefix; streamed as
SSE chunks with `stream: true`). With ECHO_API_KEY set, /v1/* needs that bearer key.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="echo-engine serve")
    p.add_argument("--model", required=True, help="model folder (only its name is used)")
    p.add_argument("--served-name", help="the name requests carry (default: --model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--reply-prefix", default="")
    p.add_argument("--log-level", choices=["debug", "info", "warning"], default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "serve":
        print("usage: echo-engine serve --model M [--port P] ...", file=sys.stderr)
        return 2
    args = serve_parser().parse_args(argv[1:])
    name = args.served_name or args.model
    key = os.environ.get("ECHO_API_KEY")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _send(self, status: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": {"message": "bad key", "type": "auth"}})
                return False
            return True

        def do_GET(self):  # noqa: N802
            if self.path == "/health":
                return self._send(200, {"status": "ok"})
            if self.path == "/v1/models" and self._authorized():
                return self._send(
                    200, {"object": "list", "data": [{"id": name, "object": "model"}]}
                )
            if self.path != "/v1/models":
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):  # noqa: N802
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": {"message": "not found"}})
            if not self._authorized():
                return
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if req.get("model") != name:
                return self._send(
                    404, {"error": {"message": f"model {req.get('model')!r} not found"}}
                )
            users = [m for m in req.get("messages", []) if m.get("role") == "user"]
            text = args.reply_prefix + (str(users[-1].get("content", "")) if users else "")
            words = text.split() or [""]
            usage = {"prompt_tokens": len(text.split()), "completion_tokens": len(words)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            base = {"id": "echo-1", "created": int(time.time()), "model": name}
            if not req.get("stream"):
                choice = {"index": 0, "finish_reason": "stop"}
                choice["message"] = {"role": "assistant", "content": text}
                return self._send(
                    200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
                )
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            chunk = {**base, "object": "chat.completion.chunk"}
            for i, w in enumerate(words):
                delta = {"content": (" " if i else "") + w}
                doc = {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(doc)}\n\n".encode())
            end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
            if (req.get("stream_options") or {}).get("include_usage"):
                self.wfile.write(
                    f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n".encode()
                )
            self.wfile.write(b"data: [DONE]\n\n")

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
