"""Wall time of `llmctl render` and `llmctl --help` (target: at most 0.3 s median).

    .venv/bin/python benchmarks/render_speed.py [--runs 15] [PROFILE ...]

Each run is a fresh process through the installed console script, as a user or a CI
script would call it; the figure is the median wall time. The runs get the environment
without PYTHONDONTWRITEBYTECODE (which some development machines set), so the warm-up
runs write the .pyc files an installed package has anyway, and no timed run compiles
llmctl from source (that alone costs ~35 ms on each start).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], runs: int, env: dict) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="*", default=[str(ROOT / "profiles" / "demo-cpu.yml")])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    exe = shutil.which("llmctl", path=str(Path(sys.executable).parent)) or "llmctl"
    cases = [("llmctl --help", [exe, "--help"])]
    cases += [(f"llmctl render {Path(p).name}", [exe, "render", p]) for p in args.profiles]
    for _, argv in cases:  # warm the page cache (and write the .pyc files)
        timed(argv, 2, env)
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':40} {'median':>8} {'min':>8} {'max':>8}   ({args.runs} runs)")
    worst = 0.0
    for label, argv in cases:
        t = timed(argv, args.runs, env)
        med = statistics.median(t)
        worst = max(worst, med)
        print(f"{label:40} {med * 1000:7.0f}ms {min(t) * 1000:7.0f}ms {max(t) * 1000:7.0f}ms")
    print(f"target <= 300 ms median: {'met' if worst <= 0.3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
