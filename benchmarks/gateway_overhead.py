"""What the gateway adds to a streamed request, and what it costs, in one run.

The timed stand-in (tests/standins/timed_server.py: fixed TTFT and token gap) is served
behind a real `llmctl gateway serve` (as a `managed: false` profile: the gateway routes to
it and starts nothing). The same streamed chat requests go direct and through the gateway,
interleaved, at concurrency 1 and 32 (closed loop), then at a fixed arrival rate (open
loop). Reported:

- median and p99 time to the first content token, the median gap between tokens;
- the gateway process's CPU time per request (the scheduler's count, all threads), and
  the same while the requests went direct (its idle cost over that time: timers and
  housekeeping), so "net" is what proxying adds;
- the CPU time of the stand-in and of the load generator per request, and how busy the
  machine's cores were (so a saturated client, stand-in or machine shows);
- requests per second, through the gateway as a ratio to direct (closed loop: what the
  machine gives; at the fixed rate: whether the gateway keeps up);
- with `--relay`, a raw byte relay on uvloop (asyncio Protocols, no HTTP parsing) as a
  third target: the floor of any chunk-by-chunk proxy process on this machine;
- the gateway's RSS and CPU when idle afterwards (one model routed).

`--clients P` splits the load generator over P processes (the concurrency divided among
them), for when one client process saturates first.

Run: .venv/bin/python benchmarks/gateway_overhead.py [-n 300] [--repeat 3] [--relay]
[--tokens 16] (`--tokens N`: N chunks per answer, for the cost per chunk passed on)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway_server_choice import cpu_of, free_port, load, pct  # noqa: E402

RELAY = r"""
import asyncio, sys, uvloop
UP, PORT = int(sys.argv[1]), int(sys.argv[2])
class Up(asyncio.Protocol):
    def __init__(self, down): self.down = down
    def data_received(self, d): self.down.write(d)
    def connection_lost(self, e): self.down.close()
class Down(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.up, self.early = t, None, []
        asyncio.ensure_future(self.connect())
    async def connect(self):
        loop = asyncio.get_running_loop()
        self.up, _ = await loop.create_connection(lambda: Up(self.t), "127.0.0.1", UP)
        for b in self.early: self.up.write(b)
    def data_received(self, d):
        if self.up is None: self.early.append(d)
        else: self.up.write(d)
    def connection_lost(self, e):
        if self.up: self.up.close()
async def main():
    await asyncio.get_running_loop().create_server(Down, "127.0.0.1", PORT)
    print("READY", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""


def _load_part(args):
    return asyncio.run(load(*args))


def run_load(url: str, n: int, c: int, clients: int, pool, tokens: int) -> tuple[list, list, float]:
    """(ttft, gaps, wall seconds) of n requests at concurrency c over `clients` processes."""
    t0 = time.monotonic()
    if clients <= 1 or pool is None:
        ttft, gaps = asyncio.run(load(url, n, c, tokens))
        return ttft, gaps, time.monotonic() - t0
    parts = [
        (url, n // clients + (i < n % clients), max(1, c // clients), tokens)
        for i in range(clients)
    ]
    ttft, gaps = [], []
    for a, b in pool.map(_load_part, parts):
        ttft += a
        gaps += b
    return ttft, gaps, time.monotonic() - t0


async def at_rate(
    url: str, rate: float, seconds: float, tokens: int
) -> tuple[int, float, list[float]]:
    """Open loop: one streamed request every 1/rate s; (completed, wall s, ttfts)."""
    import aiohttp

    body = (
        b'{"model":"standin","messages":[{"role":"user","content":"hi"}],'
        b'"stream":true,"max_tokens":%d}' % tokens
    )
    ttft: list[float] = []
    done = 0

    async def one(s):
        nonlocal done
        t0 = time.monotonic()
        first = True
        async with s.post(url + "/v1/chat/completions", data=body) as r:
            async for chunk in r.content.iter_any():
                if first and b'"content": " w' in chunk:
                    ttft.append(time.monotonic() - t0)
                    first = False
        done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        t0 = time.monotonic()
        tasks = []
        k = 0
        while (at := t0 + k / rate) < t0 + seconds:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            tasks.append(asyncio.create_task(one(s)))
            k += 1
        await asyncio.gather(*tasks)
        return done, time.monotonic() - t0, ttft


def machine_busy() -> float:
    """Seconds all cores have been busy (user+nice+system+irq+softirq+steal), /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    import psutil

    from tests.standins.timed_server import standin

    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ttft-ms", default="50")
    ap.add_argument("--itl-ms", default="10")
    ap.add_argument("--clients", type=int, default=1, help="load generator processes")
    ap.add_argument("--concurrency", default="1,32", help="closed-loop levels, comma-separated")
    ap.add_argument("--rate", type=float, default=50.0, help="fixed arrival rate, req/s; 0: skip")
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=16, help="tokens per streamed answer")
    ap.add_argument("--relay", action="store_true", help="also measure a raw byte relay")
    ap.add_argument(
        "--baseline-tree",
        help="also run the gateway from this source tree (e.g. `git archive` of an older commit)",
    )
    args = ap.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with (
        standin(
            "--ttft-ms", args.ttft_ms, "--itl-ms", args.itl_ms, "--tokens", str(args.tokens)
        ) as (
            base,
            standin_proc,
        ),
        tempfile.TemporaryDirectory() as tmp,
    ):
        up_port = int(base.rsplit(":", 1)[1].split("/")[0])
        d = Path(tmp)
        (d / "standin.yml").write_text(
            "name: standin\nbackend: vllm\nmodel: {source: standin, served_name: standin}\n"
            f"server: {{port: {up_port}, managed: false}}\n"
            # the stand-in streams every answer: readiness's non-streamed completion is skipped
            "health: {require_completion: false}\n"
        )
        gateways = {"gateway": None}
        if args.baseline_tree:
            gateways["baseline gw"] = args.baseline_tree
        procs: dict[str, subprocess.Popen] = {}
        relay = None
        pool = multiprocessing.Pool(args.clients) if args.clients > 1 else None
        try:
            targets = {"direct": base[: -len("/v1")]}
            for label, tree in gateways.items():
                port = free_port()
                sub = d / label.replace(" ", "-")
                sub.mkdir()
                (sub / "gw.yml").write_text(
                    f"name: bench-gw\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
                    f"profiles: [{d / 'standin.yml'}]\nmemory: {{host_ram: 1GiB, gpus: []}}\n"
                )
                env = {**os.environ, "LLMCTL_STATE_DIR": str(sub / "state")}
                if tree:  # the same gateway from another source tree (a before/after run)
                    env["PYTHONPATH"] = str(Path(tree).resolve())
                gw = procs[label] = subprocess.Popen(
                    [sys.executable, "-m", "llmdeploy_cli.cli.app", "gateway", "serve"]
                    + [str(sub / "gw.yml")],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    cwd=tree or ROOT,
                )
                line = gw.stdout.readline()
                if not line.startswith("ready"):
                    raise RuntimeError(f"the {label} did not start: {line!r}")
                targets[label] = f"http://127.0.0.1:{port}"
            if args.relay:
                rport = free_port()
                relay = subprocess.Popen(
                    [sys.executable, "-c", RELAY, str(up_port), str(rport)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                if "READY" not in relay.stdout.readline():
                    raise RuntimeError("the relay did not start")
                targets["raw relay"] = f"http://127.0.0.1:{rport}"
            for url in targets.values():
                asyncio.run(load(url, 4, 1))  # the first request attaches the model
            proxy_pid = {k: p.pid for k, p in procs.items()}
            if relay is not None:
                proxy_pid["raw relay"] = relay.pid
            proxy_pid["direct"] = procs["gateway"].pid  # its idle cost meanwhile
            skip = {standin_proc.pid, *proxy_pid.values()}
            own = [os.getpid()] + [c.pid for c in psutil.Process().children() if c.pid not in skip]
            for c in [int(x) for x in args.concurrency.split(",")]:
                rows: dict[str, list] = {k: [] for k in targets}
                for _ in range(args.repeat):
                    for name, url in targets.items():  # interleaved
                        px0, up0 = cpu_of(proxy_pid[name]), cpu_of(standin_proc.pid)
                        cl0 = sum(cpu_of(p) for p in own)
                        busy0 = machine_busy()
                        ttft, gaps, wall = run_load(url, args.n, c, args.clients, pool, args.tokens)
                        n = args.n
                        rows[name].append(
                            (
                                statistics.median(ttft),
                                pct(ttft, 0.99),
                                statistics.median(gaps) if gaps else float("nan"),
                                (cpu_of(proxy_pid[name]) - px0) / n,
                                (cpu_of(standin_proc.pid) - up0) / n,
                                (sum(cpu_of(p) for p in own) - cl0) / n,
                                n / wall,
                                (machine_busy() - busy0) / wall,
                            )
                        )
                report(c, args, rows)
            rate_rows = {}
            for name, url in targets.items() if args.rate > 0 else ():
                b0 = cpu_of(proxy_pid[name])
                done, wall, ttft = asyncio.run(
                    at_rate(url, args.rate, args.rate_seconds, args.tokens)
                )
                rate_rows[name] = (done / wall, statistics.median(ttft), pct(ttft, 0.99))
                rate_rows[name] += ((cpu_of(proxy_pid[name]) - b0) / max(1, done),)
            if rate_rows:
                print(f"\nfixed rate {args.rate:g} req/s for {args.rate_seconds:g} s (open loop)")
            for name, (tput, p50, p99, cpu) in rate_rows.items():
                print(
                    f"{name:11} {tput:7.1f} req/s  TTFT p50 {p50 * 1e3:6.2f} ms  "
                    f"p99 {p99 * 1e3:6.2f} ms  proxy CPU {cpu * 1e3:.3f} ms/req"
                )
            for name in rate_rows:
                if name != "direct":
                    ratio = rate_rows[name][0] / rate_rows["direct"][0]
                    print(f"throughput {name} / direct at {args.rate:g} req/s: {ratio:.3f}")
            time.sleep(2)
            for label, gw in procs.items():
                p = psutil.Process(gw.pid)
                c0 = cpu_of(gw.pid)
                time.sleep(10)
                print(
                    f"\n{label} idle: RSS {p.memory_info().rss / 2**20:.1f} MiB, "
                    f"CPU {(cpu_of(gw.pid) - c0) / 10 * 100:.3f} % over 10 s"
                )
        finally:
            if pool is not None:
                pool.close()
            if relay is not None:
                relay.kill()
                relay.wait()
            for gw in procs.values():
                gw.terminate()
                gw.wait(30)


def report(c: int, args, rows: dict[str, list]) -> None:
    print(f"\nconcurrency {c}, {args.n} streamed requests x {args.repeat}, {args.clients} client")
    print("(median of the runs, [min..max] across them; CPU: ms per request, 'proxy' is the")
    print(" process the requests went through; on the direct row the gateway's idle cost)")
    heads = ("TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "proxy CPU", "stand-in CPU", "client CPU")
    print(f"{'':11} " + " ".join(f"{h:>19}" for h in heads) + "   req/s  cores busy")
    med = {}
    for name, rs in rows.items():
        med[name] = [statistics.median(r[i] for r in rs) for i in range(8)]
        cells = []
        for i in range(6):
            lo, hi = min(r[i] for r in rs) * 1e3, max(r[i] for r in rs) * 1e3
            cells.append(f"{med[name][i] * 1e3:6.2f} [{lo:.2f}..{hi:.2f}]".rjust(19))
        print(f"{name:11} " + " ".join(cells) + f" {med[name][6]:7.1f} {med[name][7]:11.2f}")
    dr = med["direct"]
    for name, g in med.items():
        if name == "direct":
            continue
        add = [(g[i] - dr[i]) * 1e3 for i in range(3)]
        print(
            f"{name}: added TTFT p50 {add[0]:+.2f} ms, p99 {add[1]:+.2f} ms, ITL {add[2]:+.2f} ms;"
            f" CPU {g[3] * 1e3:.3f} ms/req ({(g[3] - dr[3]) * 1e3:.3f} net of the gateway's idle"
            f" cost); closed-loop req/s {g[6] / dr[6]:.3f} of direct"
        )


if __name__ == "__main__":
    main()
