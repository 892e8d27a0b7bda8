"""How exactly does `llmctl bench` time TTFT and ITL? Measured against server-side stamps.

Starts the stand-in server (tests/standins/timed_server.py) in its own process with known
TTFT and inter-token delays, runs the bench library at concurrency 1 and 32, and compares
the client's timestamps with the server's own (both time.monotonic(), one clock on Linux):

- TTFT error = client's first-content time - server's write time of that chunk
  (what the client adds to the true TTFT: delivery, parsing, event-loop delay);
- ITL error  = each measured gap between content chunks - the server's gap between the
  writes of the same two chunks.

Run: .venv/bin/python benchmarks/bench_accuracy.py [--requests 64] [--tokens 32]
Goal: median and p99 within 2 ms at both concurrencies (docs/bench.md, "Accuracy").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmdeploy_cli.bench.metrics import percentile  # noqa: E402
from llmdeploy_cli.bench.runner import BenchConfig, run_bench  # noqa: E402
from llmdeploy_cli.bench.workload import random_workload  # noqa: E402
from tests.standins.timed_server import standin  # noqa: E402


def errors(url: str, records) -> dict:
    import httpx

    stamps = httpx.get(url.removesuffix("/v1") + "/stamps", timeout=10).json()
    ttft_err, itl_err, transit = [], [], []
    for r in records:
        s = stamps.get(r.request_id)
        if not r.ok or s is None or len(s["chunks"]) != len(r.content_times):
            continue
        ttft_err.append((r.first_content - s["chunks"][0]) * 1000)
        transit.append((s["received"] - r.sent) * 1000)
        client_gaps = r.itls
        server_gaps = [b - a for a, b in zip(s["chunks"], s["chunks"][1:], strict=False)]
        itl_err += [(c - g) * 1000 for c, g in zip(client_gaps, server_gaps, strict=False)]

    def stats(xs):
        if not xs:
            return None
        a = [abs(x) for x in xs]
        return {
            "n": len(xs),
            "median_ms": round(percentile(xs, 50), 3),
            "p99_ms": round(percentile(xs, 99), 3),
            "max_abs_ms": round(max(a), 3),
            "median_abs_ms": round(percentile(a, 50), 3),
            "p99_abs_ms": round(percentile(a, 99), 3),
        }

    return {
        "ttft_error": stats(ttft_err),
        "itl_error": stats(itl_err),
        "request_transit": stats(transit),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = ap.parse_args(argv)

    report = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "args": vars(args),
        "runs": [],
    }
    with standin("--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms)) as (url, _):
        for c in args.concurrency:
            n = max(args.requests, c * 2)
            wl = random_workload(n, 16, args.tokens, seed=c)
            load = [round(x, 2) for x in os.getloadavg()]
            t = time.monotonic()
            run = run_bench(
                BenchConfig(url, "standin", wl, concurrency=c, num_prompts=n, warmup=min(c, 8))
            )
            res = run.result
            report["runs"].append(
                {
                    "concurrency": c,
                    "load_avg_1_5_15": load,
                    "requests": n,
                    "completed": res["completed"],
                    "wall_s": round(time.monotonic() - t, 2),
                    "median_ttft_ms": round(res["median_ttft_ms"], 3),
                    "median_itl_ms": round(res["median_itl_ms"], 3),
                    "max_send_lag_ms": round(res["llmctl"]["send_lag"]["max_send_lag_ms"], 3),
                    **errors(url, run.records),
                }
            )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
