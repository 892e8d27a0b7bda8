"""Stand-in engine that is ready at once but answers chat requests slowly: GET /health and
GET /v1/models at once, POST /v1/chat/completions (plain or streamed) after SLOW_CHAT_S
seconds (default 0). It reads vLLM's `--port` and `--served-model-name` from its argv.

It lets a test act while a smoke is in flight: a real engine on this machine answers the
tiny model's smoke faster than a signal can be aimed at it.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

argv = sys.argv[1:]
port = int(argv[argv.index("--port") + 1])
model = argv[argv.index("--served-model-name") + 1]
delay = float(os.environ.get("SLOW_CHAT_S", "0"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)

    def reply(self, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self.reply(b"{}")
        if self.path == "/v1/models":
            return self.reply(json.dumps({"object": "list", "data": [{"id": model}]}).encode())
        self.send_error(404)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(delay if req.get("max_tokens", 1) > 1 else 0)  # readiness asks for 1
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if self.path == "/v1/completions":  # the legacy route, as vLLM serves it
            choice = {"index": 0, "text": "Hello there.", "finish_reason": "stop"}
            doc = {"id": "x", "object": "text_completion", "model": model, "usage": usage}
            return self.reply(json.dumps({**doc, "choices": [choice]}).encode())
        if not req.get("stream"):
            msg = {"role": "assistant", "content": "Hello there."}
            doc = {
                "id": "x",
                "object": "chat.completion",
                "model": model,
                "usage": usage,
                "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
            }
            return self.reply(json.dumps(doc).encode())
        chunks = []
        for text in ("Hello", " there."):
            delta = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            chunks.append(
                {"id": "x", "object": "chat.completion.chunk", "model": model, "choices": [delta]}
            )
        chunks[-1]["choices"][0]["finish_reason"] = "stop"
        chunks.append(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        self.reply(body.encode(), "text/event-stream")


print(f"slow chat engine on port {port}", flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
