"""The HTTP side of the gateway (aiohttp.web): routing by `model`, pass-through, auth.

- POST /v1/chat/completions, /v1/completions, /v1/embeddings and the rerank routes go to
  the model whose served name or alias is in `model`; the request's `model` is rewritten
  to the engine's exact name (a body that already names it goes on byte for byte), the
  response's bytes pass through unchanged.
- GET /v1/models lists every configured model with its state; GET /health answers for the
  gateway; GET /metrics is Prometheus text.
- With a gateway key, every route but /health needs it (constant-time compare). The
  client's key is never forwarded: each engine gets the gateway's own key for it.
- Streams pass through chunk by chunk; a write waits for the client (bounded buffering:
  a slow client slows its own upstream read). A client that goes away cancels the
  upstream request (handler cancellation). Hop-by-hop headers are stripped.
- An engine that dies before the response started: 502 with the diagnosis; during a
  stream: a final SSE `error` event, no `[DONE]`, and the connection closed.
"""

from __future__ import annotations

import asyncio
import hmac
import time

from aiohttp import web

from llmdeploy_cli.gateway.caps import model_routes
from llmdeploy_cli.gateway.fleet import READY, GatewayError
from llmdeploy_cli.openai_http import wire
from llmdeploy_cli.openai_http.clients import post

PROXIED = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/rerank",
    "/v1/score",
)
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        "Authorization",
        "X-Api-Key",
        "Accept-Encoding",
    )
)
DROP_FROM_UPSTREAM = HOP_BY_HOP | {"content-encoding"}


def error_response(
    status: int, message: str, type_: str, *, code=None, retry_after=None, hint: str = ""
) -> web.Response:
    err = {"message": message + (f" ({hint})" if hint else ""), "type": type_, "code": code}
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, int(round(retry_after))))
    return web.json_response({"error": err}, status=status, headers=headers)


class Proxy:
    def __init__(self, state, fleet, session, metrics, api_key: str | None):
        self.state = state  # holds .gateway (config.Gateway), swapped by a reload
        self.fleet = fleet
        self.session = session
        self.metrics = metrics
        self.api_key = api_key
        self._urls: dict = {}
        self._routes_gw, self._routes = None, {}

    def app(self, max_body: int, extra=()) -> web.Application:
        """The application; `extra` (method, path, handler) routes carry their own auth."""
        app = web.Application(client_max_size=max_body)
        key = self._guarded  # the key check wraps each handler once, here: no middleware
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", key(self.metrics_page))
        app.router.add_get("/v1/models", key(self.models))
        for path in PROXIED:
            app.router.add_post(path, key(self.forward))
        for method, path, handler in extra:
            app.router.add_route(method, path, handler)
        app.router.add_route("*", "/{tail:.*}", key(self.not_proxied))
        return app

    def _guarded(self, handler):
        async def guarded(request: web.Request):
            if self.api_key and not self._key_ok(request):
                return error_response(
                    401, "missing or wrong API key", "invalid_request_error", code="invalid_api_key"
                )
            return await handler(request)

        return guarded

    def _key_ok(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        given = auth[7:] if auth[:7].lower() == "bearer " else request.headers.get("X-Api-Key", "")
        return hmac.compare_digest(given.encode(), self.api_key.encode())

    # -- the gateway's own routes -----------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "name": self.state.gateway.name})

    async def metrics_page(self, request: web.Request) -> web.Response:
        body, ctype = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def models(self, request: web.Request) -> web.Response:
        snap = {s["name"]: s for s in self.fleet.snapshot()}
        data = []
        for m in self.state.gateway.models.values():
            s = snap.get(m.name, {})
            for n in m.names():
                data.append(
                    {
                        "id": n,
                        "object": "model",
                        "owned_by": "llmctl",
                        "llmctl": {
                            "profile": m.name,
                            "state": s.get("state", "stopped"),
                            "in_flight": s.get("in_flight", 0),
                            "queued": s.get("queued", 0),
                            "backend": m.backend.name,
                            **({"alias_of": m.served_name} if n != m.served_name else {}),
                        },
                    }
                )
        return web.json_response({"object": "list", "data": data})

    async def not_proxied(self, request: web.Request) -> web.Response:
        return error_response(
            404,
            f"the gateway does not proxy {request.method} {request.path}",
            "invalid_request_error",
            code="unknown_route",
            hint="it serves " + ", ".join(PROXIED) + ", GET /v1/models, /health, /metrics",
        )

    # -- forwarding -------------------------------------------------------------------------
    async def forward(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as e:
            return error_response(413, e.text or "request body too large", "invalid_request_error")
        try:
            doc = wire.loads(body) if body else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("model"), str):
            return error_response(
                400, "the body must be a JSON object with a 'model' string", "invalid_request_error"
            )
        wanted = doc["model"]
        gw = self.state.gateway
        model = gw.by_request_name().get(wanted)
        if model is None:
            known = sorted(gw.by_request_name())
            return error_response(
                404,
                f"the model '{wanted}' does not exist here; known: {', '.join(known)}",
                "invalid_request_error",
                code="model_not_found",
            )
        allowed = self._routes_of(gw, model)
        if request.path not in allowed:
            return error_response(
                404,
                f"'{wanted}' does not serve {request.path}; it serves {', '.join(allowed)}",
                "invalid_request_error",
                code="unknown_route",
            )
        name = model.name
        try:
            lease = await self.fleet.lease(name)
        except GatewayError as e:
            self.metrics.request(name, e.status)
            return error_response(
                e.status, e.message, e.type, retry_after=e.retry_after, hint=e.hint
            )
        try:
            return await self._pass(request, lease, doc, body, name, t0)
        finally:
            lease.release()

    async def _pass(self, request, lease, doc, body, name, t0) -> web.StreamResponse:
        import aiohttp

        up = lease.upstream
        if doc["model"] != up.model:  # else the client's bytes go on as they came
            doc["model"] = up.model
            body = wire.dumps(doc)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Type"] = "application/json"
        if up.api_key:
            headers["Authorization"] = f"Bearer {up.api_key}"
        resp: web.StreamResponse | None = None
        try:
            # post(): a pooled connection the engine closed after its last answer (llama.cpp
            # does after every stream) is tried again instead of becoming a 502
            async with post(
                self.session, self._url(up.base_url, request.path_qs), data=body, headers=headers
            ) as r:
                resp = web.StreamResponse(status=r.status)
                out = resp.headers
                for k, v in r.headers.items():
                    if k.lower() not in DROP_FROM_UPSTREAM:
                        out[k] = v
                if r.content_length is not None:
                    resp.content_length = r.content_length
                await resp.prepare(request)
                # Whatever the upstream socket has delivered goes on in one write: one
                # event as it comes when the engine streams, several at once only when
                # they were already there together; a write waits while the client's
                # buffer is full (bounded buffering)
                content, write = r.content, resp.write
                chunk = await content.readany()
                if chunk:
                    self.metrics.first_byte(name, time.monotonic() - t0)
                while chunk:
                    await write(chunk)
                    chunk = await content.readany()
                await resp.write_eof()
                self.metrics.request(name, r.status)
                return resp
        except (asyncio.CancelledError, ConnectionResetError):
            self.metrics.request(name, 499)  # the client went away: upstream is closed
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            await self.fleet.suspect(name, lease.upstream)
            why = self._diagnose(lease, e)
            self.metrics.request(name, 502)
            if resp is None or not resp.prepared:
                return error_response(502, why, "engine_failed", code="bad_gateway")
            if "text/event-stream" in resp.headers.get("Content-Type", ""):
                event = {"error": {"message": why, "type": "engine_failed", "code": 502}}
                try:
                    await resp.write(b"event: error\ndata: " + wire.dumps(event) + b"\n\n")
                except (ConnectionResetError, RuntimeError):
                    pass
            if request.transport is not None:
                request.transport.close()  # no [DONE], no clean end: the client sees a cut
            return resp

    def _routes_of(self, gw, model) -> tuple[str, ...]:
        """The routes `model` serves, worked out once per loaded gateway file."""
        if self._routes_gw is not gw:
            self._routes_gw, self._routes = gw, {}
        allowed = self._routes.get(model.name)
        if allowed is None:
            allowed = self._routes[model.name] = model_routes(
                model.backend, model.profile.model.task
            )
        return allowed

    def _url(self, base_url: str, path_qs: str):
        """The engine's URL for this path, parsed once (yarl) and kept."""
        key = (base_url, path_qs)
        url = self._urls.get(key)
        if url is None:
            from yarl import URL

            root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
            url = URL(root + path_qs)
            if len(self._urls) > 1024:  # query strings vary: keep the cache bounded
                self._urls.clear()
            self._urls[key] = url
        return url

    def _diagnose(self, lease, e: BaseException) -> str:
        from llmdeploy_cli.openai_http.failures import classify

        f = classify(e)
        slot = lease.slot or self.fleet.slots.get(lease.name)
        handle = lease.upstream
        dead = handle is not None and not handle.alive()
        msg = f"the engine for '{lease.name}' failed: {f.message} ({f.kind})"
        if dead:
            err = getattr(handle, "error", None)
            msg = f"the engine for '{lease.name}' exited" + (
                f": {getattr(err, 'message', err)}" if err else ""
            )
            hint = getattr(err, "hint", None)
            if hint:
                msg += f"; {hint}"
        if slot is not None and slot.state != READY:
            msg += f" (now {slot.state})"
        return msg
