"""The highest request rate a load generator sustains: llmctl bench against guidellm.

Both clients drive the same fast local server (benchmarks/fast_server.py, in its own
processes: it answers every streamed chat request at once, so the client sets the pace)
at a constant request rate, rung by rung up a ladder of rates. The server stamps each
request's arrival (time.monotonic()), and every client is judged from those stamps, the
same way:

- achieved rate = (arrivals - 1) / (last arrival - first arrival);
- send lag of arrival i = (a_i - i/R) - min_j (a_j - j/R): how far behind a perfect
  constant schedule (anchored at its best moment) the request arrived;
- a rung is *sustained* when the achieved rate is within 2 % of the target, the p99 send
  lag is under 5 ms, and every request was sent (and, for llmctl, none failed).

The capacity of a client is the highest sustained rung; a client leaves the ladder after
two failed rungs in a row. The clients take turns on each rung (llmctl with each
`--workers` value, then guidellm), so they meet the same machine load, as far as a shared
machine allows.

llmctl runs as users run it (`llmctl bench --url ... --request-rate R --burstiness inf
-n R*D [--workers W]`), one process per rung. guidellm runs one process per rung too
(`guidellm run --profile kind=constant,rate=R --constraint kind=max_duration,seconds=D
--data kind=json_file,...`), with its default worker processes. It is installed in its own
venv (`--guidellm PATH`), never in the project's.

Run: .venv/bin/python benchmarks/client_capacity.py [--duration 5] [--workers 1,2]
        [--rates 100,200,...] [--guidellm /tmp/guidellm-venv/bin/guidellm]

`--closed-loop` measures something else: the highest throughput each client reaches in a
closed loop (`--concurrency 64`, `-n 5000` streamed chat requests), llmctl bench against
`vllm bench serve` and aiperf, taking turns, `--repeat` times. Throughput is judged from
the server's arrival stamps ((arrivals - 1) / (last - first)); CPU is the client's process
time (user + system of it and every process it started), which holds up on a shared
machine where wall time does not. A client's start-up (vLLM imports torch) is no part of a
request, so the CPU per request is the marginal one: the difference between a run of `-n`
and one of `-n / 10`, divided by the difference in requests. The peers run from their own
venvs under ~/.cache/llmctl-bench (see docs/benchmarks.md), never the project's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLMCTL = ROOT / ".venv" / "bin" / "llmctl"
RATE_TOLERANCE = 0.02  # achieved within 2 % of the target
LAG_P99_MS = 5.0


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def judge(stamps: list[float], rate: float, expected: int) -> dict:
    """The rung as the server saw it."""
    a = sorted(stamps)
    if len(a) < 2:
        return {"arrivals": len(a), "sustained": False}
    achieved = (len(a) - 1) / (a[-1] - a[0])
    shifted = [t - i / rate for i, t in enumerate(a)]
    base = min(shifted)
    lags = [(s - base) * 1000 for s in shifted]
    p99 = percentile(lags, 99)
    ok = (
        abs(achieved - rate) <= RATE_TOLERANCE * rate
        and p99 < LAG_P99_MS
        and len(a) >= expected * 0.99
    )
    return {
        "target": rate,
        "arrivals": len(a),
        "expected": expected,
        "achieved": round(achieved, 1),
        "lag_p50_ms": round(percentile(lags, 50), 2),
        "lag_p99_ms": round(p99, 2),
        "sustained": ok,
    }


class Server:
    def __init__(self, procs: int):
        self.dir = Path(tempfile.mkdtemp(prefix="llmctl-capacity-"))
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "fast_server.py"), "--port", "0",
             "--procs", str(procs), "--stamps-dir", str(self.dir)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"fast server did not start: {line}")
        self.port = int(line[1])
        self.pids = [int(p) for p in line[2:]]
        self.url = f"http://127.0.0.1:{self.port}"

    def stamps(self) -> list[float]:
        """Every arrival since the last call (all server processes)."""
        for pid in self.pids:
            os.kill(pid, signal.SIGUSR1)
        files = [self.dir / f"{pid}.txt" for pid in self.pids]
        deadline = time.monotonic() + 10
        while not all(f.exists() for f in files) and time.monotonic() < deadline:
            time.sleep(0.05)
        out = []
        for f in files:
            out += [float(x) for x in f.read_text().split()]
            f.unlink()
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def llmctl_rung(srv: Server, rate: float, duration: float, workers: int) -> dict:
    n = int(rate * duration)
    cmd = [str(LLMCTL), "bench", "--url", srv.url + "/v1", "--model", "fast",
           "--request-rate", str(rate), "--burstiness", "inf", "-n", str(n),
           "--input-len", "8", "--output-len", "2", "--no-force-output-len",
           "--workers", str(workers), "--json"]  # fmt: skip
    srv.stamps()  # forget anything before this rung
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration * 10 + 60)
    stamps = srv.stamps()
    # the check request is not part of the schedule: it comes first, well before the rest
    stamps = sorted(stamps)[-n:] if len(stamps) > n else stamps
    res = judge(stamps, rate, n)
    try:
        doc = json.loads(p.stdout)
        res["failed"] = doc.get("failed")
        lag = doc["llmctl"]["send_lag"]  # the client's own stamps, to the socket write
        res["client_max_send_lag_ms"] = lag["max_send_lag_ms"]
        res["client_send_lag_p50_ms"] = lag.get("median_send_lag_ms")
        res["client_send_lag_p99_ms"] = lag.get("p99_send_lag_ms")
    except (ValueError, KeyError, TypeError):
        res["failed"] = None
        res["error"] = (p.stderr or p.stdout)[-300:]
    res["sustained"] = res["sustained"] and res.get("failed") == 0
    return res


def guidellm_rung(
    srv: Server, exe: str, rate: float, duration: float, work: Path, procs: int | None
) -> dict:
    data = work / "prompts.jsonl"
    if not data.exists():
        data.write_text('{"prompt": "one two three four five six seven eight"}\n' * 50000)
    cmd = [exe, "run",
           "--backend", f"kind=openai_http,target={srv.url},model=fast",
           "--profile", f"kind=constant,rate={rate:g}",
           "--constraint", f"kind=max_duration,seconds={duration:g}",
           "--data", f"kind=json_file,path={data}",
           "--output", f"kind=json,path={work / 'guidellm.json'}",
           "--disable-console"]  # fmt: skip
    srv.stamps()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # no network here: fail fast on hub lookups
    if procs:  # guidellm's own setting (default 10 worker processes)
        env["GUIDELLM__MAX_WORKER_PROCESSES"] = str(procs)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    res = judge(srv.stamps(), rate, int(rate * duration))
    if p.returncode != 0:
        res["sustained"] = False
        res["error"] = p.stderr[-300:]
    return res


def capacity(rungs: list[dict]) -> float | None:
    return max((r["target"] for r in rungs if r.get("sustained")), default=None)


CACHE = Path.home() / ".cache" / "llmctl-bench"


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _closed_cmd(kind: str, args, url: str, n: int, work: Path) -> list[str]:
    c = str(args.concurrency)
    if kind == "llmctl":
        return [str(LLMCTL), "bench", "--url", url + "/v1", "--model", "fast", "-n", str(n),
                "--concurrency", c, "--input-len", "8", "--output-len", "2",
                "--no-force-output-len", "--json"]  # fmt: skip
    if kind == "vllm":
        return [args.vllm, "bench", "serve", "--backend", "openai-chat", "--base-url", url,
                "--endpoint", "/v1/chat/completions", "--model", "fast",
                "--tokenizer", args.tokenizer, "--dataset-name", "random",
                "--random-input-len", "8", "--random-output-len", "2",
                "--num-prompts", str(n), "--max-concurrency", c, "--request-rate", "inf",
                "--disable-tqdm", "--save-result", "--result-dir", str(work),
                "--result-filename", "vllm.json"]  # fmt: skip
    return [args.aiperf, "profile", "--model", "fast", "--url", url, "--endpoint-type", "chat",
            "--streaming", "--concurrency", c, "--request-count", str(n), "--isl", "8",
            "--osl", "2", "--tokenizer", args.tokenizer, "--ui", "none",
            "--artifact-dir", str(work / "aiperf")]  # fmt: skip


def _own_throughput(kind: str, stdout: str, work: Path) -> float | None:
    try:
        if kind == "llmctl":
            return json.loads(stdout)["request_throughput"]
        if kind == "vllm":
            return json.loads((work / "vllm.json").read_text())["request_throughput"]
        doc = json.loads((work / "aiperf" / "profile_export_aiperf.json").read_text())
        return doc["request_throughput"]["avg"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def closed_run(srv: Server, kind: str, args, n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"llmctl-closed-{kind}-"))
    cmd = _closed_cmd(kind, args, srv.url, n, work)
    srv.stamps()
    cpu0, t0 = _child_cpu(), time.monotonic()
    env = dict(os.environ)
    if kind == "vllm":  # no network here: fail fast on hub lookups (aiperf refuses a local
        env["HF_HUB_OFFLINE"] = "1"  # tokenizer path in offline mode)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=900)
    wall, cpu = time.monotonic() - t0, _child_cpu() - cpu0
    a = sorted(srv.stamps())[-n:]
    res = {"n": n, "rc": p.returncode, "wall_s": round(wall, 2), "cpu_s": round(cpu, 3)}
    res["server_rps"] = round((len(a) - 1) / (a[-1] - a[0]), 1) if len(a) > 1 else None
    res["arrivals"] = len(a)
    res["own_rps"] = _own_throughput(kind, p.stdout, work)
    if p.returncode != 0:
        res["error"] = (p.stderr or p.stdout)[-400:]
    return res


def closed_loop(args) -> dict:
    kinds = {"llmctl bench": "llmctl"}
    peers = (("vllm bench serve", "vllm", args.vllm), ("aiperf", "aiperf", args.aiperf))
    for name, kind, exe in peers:
        if Path(exe).exists():
            kinds[name] = kind
        else:
            print(f"{name}: not installed at {exe}; skipped", file=sys.stderr)
    if not Path(args.tokenizer, "tokenizer.json").exists():
        sys.path.insert(0, str(ROOT))
        from tests.tinymodel import build_tiny_model

        build_tiny_model(args.tokenizer)
    small = max(args.n // 10, args.concurrency)
    report: dict = {
        "mode": "closed-loop", "cpus": os.cpu_count(), "n": args.n, "small_n": small,
        "concurrency": args.concurrency, "server_procs": args.server_procs,
        "load_avg_before": [round(x, 2) for x in os.getloadavg()], "runs": {k: [] for k in kinds},
    }  # fmt: skip
    srv = Server(args.server_procs)
    try:
        for _ in range(args.repeat):
            for name, kind in kinds.items():
                big = closed_run(srv, kind, args, args.n)
                little = closed_run(srv, kind, args, small)
                marginal = (big["cpu_s"] - little["cpu_s"]) / (args.n - small)
                row = {"big": big, "small": little, "cpu_us_per_request": round(marginal * 1e6),
                       "load_avg_1m": round(os.getloadavg()[0], 2)}  # fmt: skip
                report["runs"][name].append(row)
                print(f"{name}: {big['server_rps']} req/s (server), {big['own_rps']} (own), "
                      f"{row['cpu_us_per_request']} us CPU/request, load {row['load_avg_1m']}",
                      file=sys.stderr, flush=True)  # fmt: skip
    finally:
        srv.stop()
    summary = {}
    for name, rows in report["runs"].items():
        ok = [r for r in rows if r["big"]["rc"] == 0 and r["big"]["server_rps"]]
        if ok:
            summary[name] = {
                "server_rps_median": statistics.median(r["big"]["server_rps"] for r in ok),
                "cpu_us_per_request_median": statistics.median(r["cpu_us_per_request"] for r in ok),
                "runs": len(ok),
            }
    report["summary"] = summary
    report["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--closed-loop", action="store_true", help="llmctl vs vLLM vs aiperf")
    ap.add_argument("-n", type=int, default=5000, help="closed loop: requests per run")
    ap.add_argument("--concurrency", type=int, default=64, help="closed loop: concurrency")
    ap.add_argument("--repeat", type=int, default=3, help="closed loop: rounds")
    ap.add_argument("--vllm", default=str(CACHE / "vllm-0.33.0" / "bin" / "vllm"))
    ap.add_argument("--aiperf", default=str(CACHE / "aiperf-0.13.0" / "bin" / "aiperf"))
    ap.add_argument("--tokenizer", default=str(CACHE / "tiny-model"))
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per rung")
    ap.add_argument("--rates", default="100,200,300,400,500,600,800,1000,1200,1500,2000")
    ap.add_argument("--workers", default="1,2", help="llmctl --workers values to try")
    ap.add_argument("--server-procs", type=int, default=1)
    ap.add_argument("--guidellm", default="/tmp/guidellm-venv/bin/guidellm")
    ap.add_argument("--skip-guidellm", action="store_true")
    ap.add_argument(
        "--guidellm-procs", default="0", help="worker-process limits to try (0: its default)"
    )
    ap.add_argument("--misses", type=int, default=2, help="failed rungs in a row to stop")
    args = ap.parse_args(argv)
    if args.closed_loop:
        print(json.dumps(closed_loop(args), indent=2))
        return 0
    rates = [float(x) for x in args.rates.split(",")]
    report: dict = {
        "cpus": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
        "args": vars(args),
        "criteria": {"rate_within": RATE_TOLERANCE, "lag_p99_ms_under": LAG_P99_MS},
        "clients": {},
    }
    srv = Server(args.server_procs)
    work = Path(tempfile.mkdtemp(prefix="llmctl-capacity-work-"))
    clients: dict[str, tuple] = {
        f"llmctl --workers {w}": ("llmctl", w)
        for w in [int(x) for x in args.workers.split(",") if x]
    }
    if not args.skip_guidellm and Path(args.guidellm).exists():
        for n in [int(x) for x in args.guidellm_procs.split(",")]:
            name = f"guidellm (MAX_WORKER_PROCESSES={n})" if n else "guidellm"
            clients[name] = ("guidellm", n)
    rungs: dict[str, list[dict]] = {name: [] for name in clients}
    misses = dict.fromkeys(clients, 0)
    try:
        for rate in rates:
            for name, (kind, n) in clients.items():
                if misses[name] >= args.misses:
                    continue
                if kind == "guidellm":
                    r = guidellm_rung(srv, args.guidellm, rate, args.duration, work, n)
                else:
                    r = llmctl_rung(srv, rate, args.duration, n)
                r["load_avg_1m"] = round(os.getloadavg()[0], 2)
                rungs[name].append(r)
                print(f"{name}: {r}", file=sys.stderr, flush=True)
                misses[name] = 0 if r["sustained"] else misses[name] + 1
            if all(m >= args.misses for m in misses.values()):
                break
    finally:
        srv.stop()
    for name in clients:
        report["clients"][name] = {"capacity_rps": capacity(rungs[name]), "rungs": rungs[name]}
    report["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
