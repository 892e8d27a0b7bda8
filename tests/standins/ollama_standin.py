"""A STAND-IN for the Ollama server, for tests only. It is not Ollama and runs no model.

The Ollama binary cannot be installed on the test machines, so this small stdlib HTTP
server (a thread) answers the part of Ollama's documented REST API that llmctl's ollama
backend uses, with the shapes given in Ollama 0.32's docs/api.md and server/routes.go:

- GET/HEAD /              "Ollama is running"
- GET /api/version        {"version": ...}
- GET /api/tags           {"models": [{"name": "n:tag", "model": "n:tag", ...}]}
- GET /v1/models          {"object": "list", "data": [{"id": "n:tag", ...}]}
- POST /api/pull          NDJSON progress ("pulling manifest", "pulling <digest>" with
                          total/completed, "verifying sha256 digest", "writing manifest",
                          "success"); an unknown name streams
                          {"error": "pull model manifest: file does not exist"}, a
                          `denied` one "...: unauthorized: access denied"
- HEAD/POST /api/blobs/sha256:<hex>   200/404; 201, or 400 on a digest mismatch
- POST /api/create        {"model", "from" | "files", "parameters", "template", "system",
                          "quantize"} -> NDJSON status ... "success"
- POST /api/show          the model's parameters/template/system, or 404
- POST /api/generate      no prompt: loads the model ({"done_reason": "load"}); 404
                          {"error": "model 'x' not found"} for an unknown model
- POST /v1/chat/completions  a canned answer (not a model), so smoke-style calls work

Names follow docs/api.md "Model names": the tag defaults to `latest`, and listings show
`name:tag`. `offline=True` makes every pull fail the way a server without network does.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.32.15"  # what GET /api/version claims (the Ollama version the shapes follow)


def tagged(name: str) -> str:
    head, _, last = name.rpartition("/")
    if ":" not in last:
        last += ":latest"
    if head == "library":
        head = ""
    return f"{head}/{last}" if head else last


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class OllamaStandin:
    """start() it (or use `with`), point the backend at .url; inspect .models/.loaded."""

    def __init__(
        self,
        registry: dict[str, int] | None = None,
        *,
        models: dict[str, dict] | None = None,
        offline: bool = False,
        denied: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        # what a pull can fetch: name -> bytes of its (fake) model layer
        self.registry = {tagged(k): v for k, v in (registry or {"qwen2.5:0.5b": 4_000}).items()}
        self.models: dict[str, dict] = {tagged(k): v for k, v in (models or {}).items()}
        self.blobs: dict[str, int] = {}
        self.loaded: dict[str, Any] = {}  # model -> keep_alive of the request that loaded it
        self.requests: list[tuple[str, str, Any]] = []
        self.offline = offline
        self.denied = {tagged(n) for n in denied}  # private names: 401 from the registry
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OllamaStandin:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OllamaStandin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the endpoints do ------------------------------------------------------------
    def listing(self) -> list[dict]:
        out = []
        for name, m in sorted(self.models.items()):
            out.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": m.get("modified_at", _now()),
                    "size": m.get("size", 0),
                    "digest": m.get("digest", hashlib.sha256(name.encode()).hexdigest()),
                    "details": {
                        "parent_model": m.get("from") or "",
                        "format": "gguf",
                        "family": "qwen2",
                        "families": ["qwen2"],
                        "parameter_size": "494.03M",
                        "quantization_level": m.get("quantize") or "Q4_K_M",
                    },
                }
            )
        return out

    def pull(self, name: str):
        yield {"status": "pulling manifest"}
        if self.offline:
            yield {
                "error": 'pull model manifest: Get "https://registry.invalid/v2/manifests": '
                "dial tcp: lookup registry.invalid: no such host"
            }
            return
        if tagged(name) in self.denied:  # server/images.go errUnauthorized
            yield {"error": "pull model manifest: unauthorized: access denied"}
            return
        size = self.registry.get(tagged(name))
        if size is None:
            yield {"error": "pull model manifest: file does not exist"}
            return
        layers = [
            ("sha256:" + hashlib.sha256(f"{name}/{i}".encode()).hexdigest(), n)
            for i, n in enumerate((size, 120))
        ]
        for digest, total in layers:
            for done in (0, total // 2, total):
                yield {
                    "status": f"pulling {digest[7:19]}",
                    "digest": digest,
                    "total": total,
                    "completed": done,
                }
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.models[tagged(name)] = {"size": size, "pulled": True, "modified_at": _now()}
        yield {"status": "success"}

    def create(self, req: dict):
        name = req.get("model") or ""
        if not name:
            yield {"error": "invalid model name", "status": 400}
            return
        base: dict = {}
        if req.get("from"):
            base = self.models.get(tagged(req["from"]))
            if base is None:
                yield {"error": f"model '{req['from']}' not found"}
                return
            yield {"status": "reading model metadata"}
        elif req.get("files"):
            for fname, digest in req["files"].items():
                if digest not in self.blobs:
                    yield {"error": f"blob {digest} for {fname} not found"}
                    return
            yield {"status": "parsing GGUF"}
            for digest in req["files"].values():
                yield {"status": f"using existing layer {digest}"}
        else:
            yield {"error": "neither 'from' or 'files' was specified", "status": 400}
            return
        if req.get("quantize"):
            yield {
                "status": f"quantizing F16 model to {req['quantize'].upper()}",
                "digest": "0",
                "total": 100,
                "completed": 100,
            }
        params = {**base.get("parameters", {}), **(req.get("parameters") or {})}
        if params:
            yield {"status": "creating parameters layer"}
        yield {"status": "writing manifest"}
        self.models[tagged(name)] = {
            "from": req.get("from"),
            "files": req.get("files"),
            "parameters": params,
            "template": req.get("template", base.get("template")),
            "system": req.get("system", base.get("system")),
            "quantize": req.get("quantize"),
            "size": base.get(
                "size", sum(self.blobs.get(d, 0) for d in (req.get("files") or {}).values())
            ),
            "modified_at": _now(),
        }
        yield {"status": "success"}


def _params_text(params: dict) -> str:
    lines = []
    for k, v in params.items():
        for item in v if isinstance(v, list) else [v]:
            lines.append(f"{k:<30} {json.dumps(item) if isinstance(item, str) else item}")
    return "\n".join(lines)


def _handler(s: OllamaStandin):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        # -- plumbing ---------------------------------------------------------------------
        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _json_body(self) -> dict:
            raw = self._body()
            try:
                return json.loads(raw) if raw else {}
            except ValueError:
                return {}

        def _send(self, code: int, body: Any = None, ctype="application/json; charset=utf-8"):
            data = b""
            if body is not None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _stream(self, parts, stream: bool):
            if not stream:  # waitForStream: the last object, or the error as 500
                last: dict = {}
                for p in parts:
                    if "error" in p:
                        return self._send(p.get("status", 500), {"error": p["error"]})
                    last = p
                return self._send(200, last)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for p in parts:
                line = (json.dumps({"error": p["error"]} if "error" in p else p) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        # -- routes -----------------------------------------------------------------------
        def do_HEAD(self):
            s.requests.append(("HEAD", self.path, None))
            if self.path == "/":
                return self._send(200, "Ollama is running", "text/plain; charset=utf-8")
            if self.path.startswith("/api/blobs/"):
                digest = self.path.rsplit("/", 1)[1]
                return self._send(200 if digest in s.blobs else 404)
            return self._send(404)

        def do_GET(self):
            s.requests.append(("GET", self.path, None))
            if self.path == "/":
                return self._send(200, "Ollama is running", "text/plain; charset=utf-8")
            if self.path == "/api/version":
                return self._send(200, {"version": VERSION})
            if self.path == "/api/tags":
                return self._send(200, {"models": s.listing()})
            if self.path == "/v1/models":
                data = [
                    {
                        "id": m["model"],
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": m["model"].rpartition("/")[0] or "library",
                    }
                    for m in s.listing()
                ]
                return self._send(200, {"object": "list", "data": data})
            return self._send(404, "404 page not found", "text/plain")

        def do_POST(self):
            path = self.path
            if path.startswith("/api/blobs/"):
                raw = self._body()
                s.requests.append(("POST", path, len(raw)))
                digest = path.rsplit("/", 1)[1]
                got = "sha256:" + hashlib.sha256(raw).hexdigest()
                if got != digest:
                    return self._send(
                        400, {"error": f'digest mismatch, expected "{digest}", got "{got}"'}
                    )
                s.blobs[digest] = len(raw)
                return self._send(201)
            req = self._json_body()
            s.requests.append(("POST", path, req))
            stream = req.get("stream", True) is not False
            if path == "/api/pull":
                return self._stream(s.pull(req.get("model") or req.get("name") or ""), stream)
            if path == "/api/create":
                return self._stream(s.create(req), stream)
            if path == "/api/show":
                m = s.models.get(tagged(req.get("model") or ""))
                if m is None:
                    return self._send(404, {"error": f"model '{req.get('model')}' not found"})
                return self._send(
                    200,
                    {
                        "parameters": _params_text(m.get("parameters") or {}),
                        "template": m.get("template") or "",
                        "system": m.get("system") or "",
                        "details": {"format": "gguf", "family": "qwen2"},
                        "capabilities": ["completion"],
                        "modified_at": m.get("modified_at", _now()),
                    },
                )
            if path == "/api/generate":
                name = req.get("model") or ""
                if tagged(name) not in s.models:
                    return self._send(404, {"error": f"model '{name}' not found"})
                base = {"model": name, "created_at": _now(), "done": True}
                if not req.get("prompt"):
                    s.loaded[tagged(name)] = req.get("keep_alive")
                    return self._send(200, {**base, "response": "", "done_reason": "load"})
                s.loaded.setdefault(tagged(name), req.get("keep_alive"))
                return self._send(200, {**base, "response": "Hello.", "done_reason": "stop"})
            if path == "/v1/completions" and tagged(req.get("model") or "") in s.models:
                choice = {"index": 0, "text": "Hello.", "finish_reason": "stop"}
                usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
                return self._send(
                    200,
                    {"id": "cmpl-standin", "object": "text_completion", "created": int(time.time()),
                     "model": req["model"], "choices": [choice], "usage": usage},
                )  # fmt: skip
            if path == "/v1/chat/completions":
                name = req.get("model") or ""
                if tagged(name) not in s.models:
                    return self._send(
                        404,
                        {
                            "error": {
                                "message": f'model "{name}" not found, try pulling it first',
                                "type": "api_error",
                                "param": None,
                                "code": None,
                            }
                        },
                    )
                return self._send(
                    200,
                    {
                        "id": "chatcmpl-standin",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": name,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "Hello."},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                    },
                )
            return self._send(404, "404 page not found", "text/plain")

    return Handler


if __name__ == "__main__":  # pragma: no cover - handy for poking at it by hand
    import sys

    srv = OllamaStandin(port=int(sys.argv[1]) if len(sys.argv) > 1 else 11434).start()
    print(f"Ollama stand-in (not Ollama) on {srv.url}", file=sys.stderr)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()
