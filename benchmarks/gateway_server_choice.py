"""Which server library should the gateway's proxy use? The same pass-through on each.

Each candidate is a minimal streaming proxy in its own process, forwarding
POST /v1/chat/completions to the timed stand-in (tests/standins/timed_server.py: fixed
TTFT and token gap) with the same upstream client (aiohttp.ClientSession, as the gateway
does) and passing every chunk on as it comes:

- aiohttp: aiohttp.web, `StreamResponse.write` per upstream chunk;
- starlette: starlette's `StreamingResponse` over the same upstream iterator, served by
  uvicorn (httptools and uvloop where installed: its fastest setup).

Reported per candidate, with "direct" (no proxy) as the baseline, at concurrency 1 and 32:
median and p99 time to the first content chunk, the median gap between chunks, and the
proxy process's CPU time (user + system) per streamed request.

Run: .venv/bin/python benchmarks/gateway_server_choice.py [-n 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AIOHTTP_PROXY = r"""
import sys, aiohttp
from aiohttp import web
UP = sys.argv[1]
async def make():
    app = web.Application()
    async def start(app):
        app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    async def close(app):
        await app["s"].close()
    app.on_startup.append(start)
    app.on_cleanup.append(close)
    async def fwd(request):
        body = await request.read()
        async with app["s"].post(UP + "/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"}) as r:
            resp = web.StreamResponse(status=r.status)
            resp.content_type = r.content_type
            await resp.prepare(request)
            async for chunk in r.content.iter_chunked(65536):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    app.router.add_post("/v1/chat/completions", fwd)
    return app
web.run_app(make(), host="127.0.0.1", port=int(sys.argv[2]), access_log=None,
            print=lambda *a: print("READY", flush=True))
"""

STARLETTE_PROXY = r"""
import sys, aiohttp, uvicorn
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route
UP = sys.argv[1]
S = {}
async def fwd(request):
    body = await request.body()
    if "s" not in S:
        S["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    cm = S["s"].post(UP + "/v1/chat/completions", data=body,
                     headers={"Content-Type": "application/json"})
    r = await cm.__aenter__()
    async def gen():
        try:
            async for chunk in r.content.iter_chunked(65536):
                yield chunk
        finally:
            await cm.__aexit__(None, None, None)
    return StreamingResponse(gen(), status_code=r.status, media_type=r.content_type)
app = Starlette(routes=[Route("/v1/chat/completions", fwd, methods=["POST"])])
class Srv(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        print("READY", flush=True)
Srv(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                   access_log=False)).run()
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(code: str, upstream: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    p = subprocess.Popen(
        [sys.executable, "-c", code, upstream, str(port)], stdout=subprocess.PIPE, text=True
    )
    line = p.stdout.readline()
    if "READY" not in line:
        p.kill()
        raise RuntimeError(f"proxy did not start: {line!r}")
    return p, f"http://127.0.0.1:{port}"


async def load(
    url: str, n: int, concurrency: int, tokens: int = 16
) -> tuple[list[float], list[float]]:
    import aiohttp

    body = (
        b'{"model":"standin","messages":[{"role":"user","content":"hi"}],'
        b'"stream":true,"max_tokens":%d}' % tokens
    )
    ttft: list[float] = []
    gaps: list[float] = []
    todo = iter(range(n))

    async def worker(s):
        for _ in todo:
            t0 = time.monotonic()
            last = None
            async with s.post(
                url + "/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as r:
                async for chunk in r.content.iter_any():
                    now = time.monotonic()
                    if b'"content": " w' in chunk or b'"content":" w' in chunk:
                        if last is None:
                            ttft.append(now - t0)
                        else:
                            gaps.append(now - last)
                        last = now

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    return ttft, gaps


def cpu_of(pid: int) -> float:
    """Seconds on a CPU so far, all threads: the scheduler's own count in nanoseconds
    (/proc/PID/task/*/schedstat) where Linux has it, else user + system time (which the
    kernel samples at each clock tick: 10 ms steps)."""
    import glob

    import psutil

    try:
        return sum(
            int(Path(f).read_text().split()[0]) for f in glob.glob(f"/proc/{pid}/task/*/schedstat")
        ) / 1e9 or _ticks(psutil, pid)
    except (OSError, ValueError, IndexError):
        return _ticks(psutil, pid)


def _ticks(psutil, pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    from tests.standins.timed_server import standin

    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with standin("--ttft-ms", "20", "--itl-ms", "5", "--tokens", "16") as (base, _):
        upstream = base[: -len("/v1")]
        proxies = {
            "aiohttp": start_proxy(AIOHTTP_PROXY, upstream),
            "starlette": start_proxy(STARLETTE_PROXY, upstream),
        }
        try:
            targets = {"direct": (None, upstream)} | {
                k: (p, url) for k, (p, url) in proxies.items()
            }
            for c in (1, 32):
                rows: dict[str, list] = {k: [] for k in targets}
                for _ in range(args.repeat):
                    for name, (proc, url) in targets.items():  # interleaved
                        before = cpu_of(proc.pid) if proc else 0.0
                        ttft, gaps = asyncio.run(load(url, args.n, c))
                        cpu = (cpu_of(proc.pid) - before) / args.n if proc else 0.0
                        rows[name].append(
                            (statistics.median(ttft), pct(ttft, 0.99), statistics.median(gaps), cpu)
                        )
                print(f"\nconcurrency {c}, {args.n} streamed requests x {args.repeat} (medians)")
                heads = ("TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "CPU ms/req")
                print(f"{'':10} " + " ".join(f"{h:>12}" for h in heads))
                for name, rs in rows.items():
                    m = [statistics.median(r[i] for r in rs) for i in range(4)]
                    print(
                        f"{name:10} {m[0] * 1e3:12.2f} {m[1] * 1e3:12.2f} {m[2] * 1e3:11.2f} "
                        f"{m[3] * 1e3:11.3f}"
                    )
        finally:
            for p, _ in proxies.values():
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
