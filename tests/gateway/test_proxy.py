"""The proxy against a stand-in engine (an aiohttp app on a real port): what it rewrites,
what it passes through byte for byte, and how it ends a stream whose engine died."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
import pytest
from aiohttp import web

from llmdeploy_cli.gateway.config import load_gateway
from tests.fakes import free_port
from tests.gateway.conftest import llama_profile, write_gateway

RAW = b'{"id":"x",  "model":"engine-name" ,"choices":[]}'  # odd spacing: must arrive as is


class StandIn:
    def __init__(self):
        self.seen: list[dict] = []
        self.cancelled = asyncio.Event()

    async def chat(self, request: web.Request):
        body = await request.json()
        self.seen.append({"headers": dict(request.headers), "body": body})
        if body.get("slow"):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if not body.get("stream"):
            return web.Response(body=RAW, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(4):
            await resp.write(b'data: {"n": %d}\n\n' % i)
            await asyncio.sleep(0.02)
            if body.get("crash") and i == 1:
                request.transport.close()
                return resp
        await resp.write(b"data: [DONE]\n\n")
        return resp


class Handle:
    def __init__(self, url):
        self.base_url, self.model, self.api_key = url + "/v1", "engine-name", "engine-key"

    async def wait_ready(self):
        pass

    def alive(self):
        return True

    async def stop(self):
        pass


@pytest.fixture
def gw(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    llama_profile(tmp_path / "profiles", "a", gguf)
    port = free_port()
    f = write_gateway(
        tmp_path,
        f"""\
        name: pt
        listen: {{host: 127.0.0.1, port: {port}}}
        api_key_env: PT_KEY
        profiles: [profiles/a.yml]
        models: {{a: {{need: 1GiB, max_queue: 1, max_concurrency: 1, queue_timeout: 5}}}}
        memory: {{host_ram: 4GiB, gpus: []}}
        max_body: 2KiB
        """,
    )
    return load_gateway(f, {"PT_KEY": "client-key"}), f"http://127.0.0.1:{port}"


def run_with_gateway(gw_and_url, body):
    """Start the stand-in and the gateway in one loop, run `body(session, url, standin)`."""
    from llmdeploy_cli.gateway.server import run_gateway

    gw, url = gw_and_url

    async def main():
        standin = StandIn()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", standin.chat)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        up = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        stop = threading.Event()
        task = asyncio.create_task(
            run_gateway(gw, {"PT_KEY": "client-key"}, stop, starter=lambda m: Handle(up))
        )
        for _ in range(100):
            try:
                async with aiohttp.ClientSession() as s, s.get(url + "/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.02)
        try:
            headers = {"Authorization": "Bearer client-key", "Connection": "keep-alive"}
            async with aiohttp.ClientSession(headers=headers) as s:
                await body(s, url, standin)
        finally:
            stop.set()
            await task
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_model_is_rewritten_bytes_pass_through_keys_do_not(gw):
    async def body(s, url, standin):
        async with s.post(
            url + "/v1/chat/completions",
            json={"model": "a", "messages": []},
            headers={"Proxy-Authorization": "x", "X-Trace": "t1"},
        ) as r:
            assert r.status == 200 and await r.read() == RAW
        seen = standin.seen[-1]
        assert seen["body"]["model"] == "engine-name"
        h = {k.lower(): v for k, v in seen["headers"].items()}
        assert h["authorization"] == "Bearer engine-key"  # the client's key never goes on
        assert "proxy-authorization" not in h and h["x-trace"] == "t1"

    run_with_gateway(gw, body)


def test_a_stream_whose_engine_dies_ends_with_an_error_event_and_no_done(gw):
    async def body(s, url, standin):
        async with s.post(
            url + "/v1/chat/completions",
            json={"model": "a", "stream": True, "crash": True},
        ) as r:
            assert r.status == 200
            data = b""
            with pytest.raises(aiohttp.ClientPayloadError):
                async for chunk in r.content.iter_any():
                    data += chunk
        assert b'data: {"n": 0}' in data and b"[DONE]" not in data
        assert b"event: error" in data
        err = json.loads(data.split(b"event: error\ndata: ")[1].split(b"\n")[0])
        assert err["error"]["code"] == 502

    run_with_gateway(gw, body)


def test_a_full_stream_passes_through(gw):
    async def body(s, url, standin):
        async with s.post(url + "/v1/chat/completions", json={"model": "a", "stream": True}) as r:
            data = await r.read()
        assert data.endswith(b"data: [DONE]\n\n") and data.count(b"data: ") == 5

    run_with_gateway(gw, body)


def test_client_disconnect_cancels_the_upstream_request(gw):
    async def body(s, url, standin):
        req = asyncio.create_task(
            s.post(url + "/v1/chat/completions", json={"model": "a", "slow": True})
        )
        await asyncio.sleep(0.3)
        req.cancel()  # the client goes away
        await asyncio.wait_for(standin.cancelled.wait(), 5)

    run_with_gateway(gw, body)


def test_body_limit_queue_limit_and_key(gw):
    async def body(s, url, standin):
        async with s.post(url + "/v1/chat/completions", data=b"x" * 4096) as r:
            assert r.status == 413
        async with s.post(
            url + "/v1/chat/completions", json={"model": "a"}, headers={"Authorization": "no"}
        ) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_api_key"
        busy = asyncio.create_task(
            s.post(url + "/v1/chat/completions", json={"model": "a", "slow": True})
        )
        await asyncio.sleep(0.2)  # in flight: max_concurrency 1
        waiting = asyncio.create_task(s.post(url + "/v1/chat/completions", json={"model": "a"}))
        await asyncio.sleep(0.2)  # queued: max_queue 1
        async with s.post(url + "/v1/chat/completions", json={"model": "a"}) as r:
            assert r.status == 429 and r.headers.get("Retry-After")
        busy.cancel()
        r = await waiting
        assert r.status == 200
        r.release()

    run_with_gateway(gw, body)
