"""What the gateway adds to a streamed request, and what it costs, in one run.

The timed stand-in (tests/standins/timed_server.py: fixed TTFT and token gap) is served
behind a real `llmctl gateway serve` (as a `managed: false` profile: the gateway routes to
it and starts nothing). The same streamed chat requests go direct and through the gateway,
interleaved, at concurrency 1 and 32. Reported: median and p99 time to the first content
token, the median gap between tokens, the gateway process's CPU time (user + system) per
request, and its RSS after the run (idle, one model routed).

Run: .venv/bin/python benchmarks/gateway_overhead.py [-n 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
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


def main() -> None:
    import psutil

    from tests.standins.timed_server import standin

    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ttft-ms", default="50")
    ap.add_argument("--itl-ms", default="10")
    args = ap.parse_args()
    with (
        standin("--ttft-ms", args.ttft_ms, "--itl-ms", args.itl_ms, "--tokens", "16") as (
            base,
            _,
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
        port = free_port()
        (d / "gw.yml").write_text(
            f"name: bench-gw\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
            "profiles: [standin.yml]\nmemory: {host_ram: 1GiB, gpus: []}\n"
        )
        env = {**os.environ, "LLMCTL_STATE_DIR": str(d / "state")}
        llmctl = str(ROOT / ".venv" / "bin" / "llmctl")
        gw = subprocess.Popen(
            [llmctl, "gateway", "serve", str(d / "gw.yml")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            line = gw.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"the gateway did not start: {line!r}")
            pid = psutil.Process(gw.pid).pid
            via = f"http://127.0.0.1:{port}"
            direct = base[: -len("/v1")]
            asyncio.run(load(via, 4, 1))  # the first request attaches the model
            for c in (1, 32):
                rows: dict[str, list] = {"direct": [], "gateway": []}
                for _ in range(args.repeat):
                    for name, url in (("direct", direct), ("gateway", via)):
                        before = cpu_of(pid)
                        ttft, gaps = asyncio.run(load(url, args.n, c))
                        cpu = (cpu_of(pid) - before) / args.n
                        rows[name].append(
                            (statistics.median(ttft), pct(ttft, 0.99), statistics.median(gaps), cpu)
                        )
                print(f"\nconcurrency {c}, {args.n} streamed requests x {args.repeat} (medians)")
                heads = ("TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "gw CPU ms/req")
                print(f"{'':10} " + " ".join(f"{h:>13}" for h in heads))
                med = {}
                for name, rs in rows.items():
                    med[name] = [statistics.median(r[i] for r in rs) for i in range(4)]
                    m = med[name]
                    print(
                        f"{name:10} {m[0] * 1e3:13.2f} {m[1] * 1e3:13.2f} {m[2] * 1e3:13.2f} "
                        f"{m[3] * 1e3:13.3f}"
                    )
                g, dr = med["gateway"], med["direct"]
                add = [(g[i] - dr[i]) * 1e3 for i in range(3)]
                print(
                    f"added: TTFT p50 {add[0]:+.2f} ms, p99 {add[1]:+.2f} ms, ITL {add[2]:+.2f} ms"
                )
            time.sleep(2)
            p = psutil.Process(pid)
            c0 = cpu_of(pid)
            time.sleep(5)
            print(
                f"\ngateway idle: RSS {p.memory_info().rss / 2**20:.1f} MiB, "
                f"CPU {(cpu_of(pid) - c0) / 5 * 100:.2f} % over 5 s"
            )
        finally:
            gw.terminate()
            gw.wait(30)


if __name__ == "__main__":
    main()
