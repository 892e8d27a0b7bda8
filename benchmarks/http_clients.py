"""Which async HTTP stack should bench use? The same request loop on each candidate.

Every candidate runs the same closed loop in a fresh process: `--concurrency` tasks send
`-n` streamed chat requests in all to benchmarks/fast_server.py (its own process), read
each SSE stream to its end with the project's parser (llmdeploy_cli.openai_http.wire), and
JSON-decode every chunk. What differs is the stack:

- httpx: `httpx.AsyncClient` with limits as large as the concurrency, no retries,
  `client.stream(...)` + `aiter_bytes()` (what bench used before);
- aiohttp: `aiohttp.ClientSession` with a connector limit as large as the concurrency,
  `resp.content.iter_any()` (what `vllm bench serve` and aiperf use);
- +uvloop: the same on uvloop's event loop;
- +orjson: chunks decoded with orjson instead of the standard json module;
- +trace: a TraceConfig hook stamping when each request's headers go out (bench's send lag).

Reported per candidate: requests per second (wall) and the client's CPU time per request
(user + system of its process, which holds up on a shared machine where wall time does not).
Each candidate runs `--repeat` times, interleaved, and the median is shown.

Run: .venv/bin/python benchmarks/http_clients.py [-n 5000] [--concurrency 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CANDIDATES = {
    "httpx": ("httpx", "asyncio", "json", False),
    "aiohttp": ("aiohttp", "asyncio", "json", False),
    "aiohttp+uvloop": ("aiohttp", "uvloop", "json", False),
    "aiohttp+uvloop+orjson": ("aiohttp", "uvloop", "orjson", False),
    "aiohttp+uvloop+orjson+trace": ("aiohttp", "uvloop", "orjson", True),
}

BODY = {
    "model": "fast",
    "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 2,
}


def _child(name: str, url: str, n: int, conc: int) -> dict:
    import asyncio

    from llmdeploy_cli.openai_http.wire import SSEDecoder

    lib, loop, dec, trace = CANDIDATES[name]
    if dec == "orjson":
        import orjson

        loads = orjson.loads
    else:
        loads = json.loads
    payload = json.dumps(BODY).encode()
    hdrs = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    left = [n]
    done = [0]
    stamps: list[float] = []

    def consume(chunks_payloads) -> None:
        for p in chunks_payloads:
            if p != b"[DONE]":
                loads(p)

    async def main_httpx():
        import httpx

        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(
            limits=limits,
            timeout=httpx.Timeout(30.0, pool=None),
            transport=httpx.AsyncHTTPTransport(retries=0, limits=limits),
            trust_env=False,
        ) as c:

            async def worker():
                while left[0] > 0:
                    left[0] -= 1
                    d = SSEDecoder()
                    async with c.stream("POST", url, content=payload, headers=hdrs) as r:
                        async for b in r.aiter_bytes():
                            consume(d.feed(b))
                    consume(d.close())
                    done[0] += 1

            await asyncio.gather(*(worker() for _ in range(conc)))

    async def main_aiohttp():
        import aiohttp

        tcs = []
        if trace:
            tc = aiohttp.TraceConfig()

            async def on_sent(session, ctx, params):
                stamps.append(time.monotonic())

            tc.on_request_headers_sent.append(on_sent)
            tcs = [tc]
        conn = aiohttp.TCPConnector(limit=conc, keepalive_timeout=30.0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=30.0)
        async with aiohttp.ClientSession(
            connector=conn, timeout=timeout, trace_configs=tcs or None
        ) as s:

            async def worker():
                while left[0] > 0:
                    left[0] -= 1
                    d = SSEDecoder()
                    async with s.post(url, data=payload, headers=hdrs) as r:
                        async for b in r.content.iter_any():
                            consume(d.feed(b))
                    consume(d.close())
                    done[0] += 1

            await asyncio.gather(*(worker() for _ in range(conc)))

    main = main_httpx if lib == "httpx" else main_aiohttp
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"completed": done[0], "wall_s": wall, "cpu_s": cpu}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--server-procs", type=int, default=1)
    ap.add_argument("--only", default=",".join(CANDIDATES))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.n, args.concurrency)))
        return 0
    from benchmarks.client_capacity import Server

    names = [x for x in args.only.split(",") if x]
    srv = Server(args.server_procs)
    url = srv.url + "/v1/chat/completions"
    runs: dict[str, list[dict]] = {k: [] for k in names}
    load0 = os.getloadavg()
    try:
        for _ in range(args.repeat):
            for name in names:
                cmd = [sys.executable, __file__, "--child", name, url, "-n", str(args.n),
                       "--concurrency", str(args.concurrency)]  # fmt: skip
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                if p.returncode != 0:
                    print(f"{name}: failed: {p.stderr[-500:]}", file=sys.stderr)
                    continue
                r = json.loads(p.stdout)
                runs[name].append(r)
                print(
                    f"{name}: {r['completed'] / r['wall_s']:.0f} req/s, "
                    f"{r['cpu_s'] / r['completed'] * 1e6:.0f} us CPU/request",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        srv.stop()
    print(f"# -n {args.n} --concurrency {args.concurrency}, {args.repeat} runs each (median); "
          f"load average {load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
    print(f"{'candidate':32} {'req/s':>8} {'CPU us/req':>11}")
    for name in names:
        rs = runs[name]
        if not rs:
            print(f"{name:32} {'failed':>8}")
            continue
        rps = statistics.median(r["completed"] / r["wall_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] / r["completed"] * 1e6 for r in rs)
        print(f"{name:32} {rps:8.0f} {cpu:11.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
