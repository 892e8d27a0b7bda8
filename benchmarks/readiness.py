"""Serve figures with a real engine (transformers serve, tiny model, CPU):

1. readiness detection delay: from the engine's first successful answer (seen by an
   independent poller) to llmctl printing "ready" — target at most 50 ms;
   - health rung (health.require_completion: false): a 2 ms poller on GET /health;
   - completion rung (the default): a poller sending 1-token chat completions;
2. supervisor memory: RSS of the detached supervisor (and of its watchdog) while the
   server runs — target at most 60 MB;
3. stop: `llmctl stop` wall time for the real engine, and the group-stop time of a
   process group that ignores SIGTERM (grace 0.5 s) — target grace + 100 ms.

    .venv/bin/python benchmarks/readiness.py [--runs 3]

Builds the tiny model in .cache/tiny-model (or uses $LLMCTL_TINY_MODEL); state goes to a
temporary directory; every server it starts is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def env_for(state: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["LLMCTL_STATE_DIR"] = state
    return env


def profile(tmp: Path, model: Path, port: int, completion: bool) -> Path:
    p = tmp / f"bench-{port}.yml"
    p.write_text(
        f"""name: bench-ready
backend: transformers
model:
  source: {model}
  dtype: float32
server:
  port: {port}
resources:
  device: cpu
health:
  require_completion: {str(completion).lower()}
"""
    )
    return p


class Poller(threading.Thread):
    """Records the monotonic time of the engine's first successful answer."""

    def __init__(self, port: int, model: str, completion: bool):
        super().__init__(daemon=True)
        self.port, self.model, self.completion = port, model, completion
        self.first_ok: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        import httpx

        base = f"http://127.0.0.1:{self.port}"
        with httpx.Client(timeout=5.0, trust_env=False) as c:
            while not self.done.is_set() and self.first_ok is None:
                try:
                    if self.completion:
                        r = c.post(
                            base + "/v1/chat/completions",
                            json={
                                "model": self.model,
                                "messages": [{"role": "user", "content": "Hi"}],
                                "max_tokens": 1,
                            },
                        )
                    else:
                        r = c.get(base + "/health")
                    if r.status_code == 200:
                        self.first_ok = time.monotonic()
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.002)


def detection_delay(model: Path, completion: bool, state: str, tmp: Path) -> float:
    from llmdeploy_cli.netutil import free_port

    port = free_port()
    p = profile(tmp, model, port, completion)
    poller = Poller(port, str(model), completion)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmdeploy_cli", "serve", str(p), "--no-smoke"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env_for(state),
    )
    poller.start()
    try:
        line = proc.stdout.readline()
        t_ready = time.monotonic()
        if not line.startswith("ready"):
            raise SystemExit(f"serve did not get ready: {line!r}")
        poller.join(10)
        if poller.first_ok is None:
            raise SystemExit("the poller never saw an answer")
        return t_ready - poller.first_ok
    finally:
        poller.done.set()
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def supervisor_and_stop(model: Path, state: str, tmp: Path) -> dict:
    import psutil

    from llmdeploy_cli.netutil import free_port

    p = profile(tmp, model, free_port(), True)
    env = env_for(state)
    r = subprocess.run(
        [sys.executable, "-m", "llmdeploy_cli", "serve", str(p), "--detach", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    doc = json.loads(r.stdout)
    sup = psutil.Process(doc["pid"])
    time.sleep(2.0)  # let it settle while serving
    rss = sup.memory_info().rss / 2**20
    watchdogs = [
        c.memory_info().rss / 2**20
        for c in psutil.process_iter(["cmdline"])
        if "llmdeploy_cli.supervise.watchdog" in " ".join(c.info["cmdline"] or [])
        and c.ppid() == sup.pid
    ]
    t0 = time.monotonic()
    s = subprocess.run(
        [sys.executable, "-m", "llmdeploy_cli", "stop", "bench-ready", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    wall = time.monotonic() - t0
    res = json.loads(s.stdout)["stopped"][0]
    return {
        "supervisor_rss_mb": rss,
        "watchdog_rss_mb": watchdogs[0] if watchdogs else None,
        "stop_wall_s": wall,
        "stop_reported_s": res["seconds"],
    }


def stubborn_stop(tmp: Path, grace: float = 0.5) -> float:
    from llmdeploy_cli.supervise.logfile import LogSink
    from llmdeploy_cli.supervise.process import group_members, spawn

    script = tmp / "stubborn.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    child = spawn([sys.executable, str(script)], dict(os.environ), log=LogSink(tmp / "s.log"))
    while len(group_members(child.pgid)) < 2:
        time.sleep(0.02)
    return child.stop(signal.SIGTERM, grace)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    model = os.environ.get("LLMCTL_TINY_MODEL") or str(ROOT / ".cache" / "tiny-model")
    from tests.tinymodel import build_tiny_model

    model = build_tiny_model(model)
    with tempfile.TemporaryDirectory(prefix="llmctl-bench-") as tmpd:
        tmp = Path(tmpd)
        state = str(tmp / "state")
        rows = []
        for completion in (False, True):
            d = [detection_delay(model, completion, state, tmp) * 1000 for _ in range(args.runs)]
            rung = "completion" if completion else "health"
            rows.append((rung, d))
        sv = supervisor_and_stop(model, state, tmp)
        stub = [stubborn_stop(tmp) for _ in range(args.runs)]

    print(f"readiness detection delay ({args.runs} runs; target <= 50 ms)")
    for rung, d in rows:
        print(f"  {rung:<10} rung: median {statistics.median(d):6.1f} ms   max {max(d):6.1f} ms")
    print("detached supervisor while serving (target <= 60 MB)")
    print(f"  supervisor RSS {sv['supervisor_rss_mb']:6.1f} MB")
    if sv["watchdog_rss_mb"] is not None:
        print(f"  watchdog RSS   {sv['watchdog_rss_mb']:6.1f} MB")
    print("stop (target: grace + 100 ms)")
    print(
        f"  llmctl stop, transformers serve (grace 15 s): {sv['stop_wall_s']:.2f} s wall, "
        f"{sv['stop_reported_s']:.2f} s group gone"
    )
    print(
        f"  group ignoring SIGTERM, grace 0.5 s: median {statistics.median(stub):.3f} s, "
        f"max {max(stub):.3f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
