"""The gateway process alone, idle, with several models loaded.

A real `llmctl gateway serve` with N llama.cpp profiles (the tiny GGUF model on CPU, the
xllamacpp wheel), all `preload: true`. Once every model is ready, the gateway process's
CPU time is read over a quiet window (the scheduler's own count, all its threads:
`/proc/PID/task/*/schedstat`) with its RSS and thread count. The engines are processes of
their own and are not counted.

Run: .venv/bin/python benchmarks/gateway_idle.py [--models 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway_server_choice import cpu_of, free_port  # noqa: E402


def main() -> None:
    import httpx
    import psutil

    from tests.gguf_model import write_gguf
    from tests.tinymodel import build_tiny_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        gguf = write_gguf(build_tiny_model(d / "tiny-model"), d / "tiny.gguf")
        names = [f"m{i}" for i in range(args.models)]
        for n in names:
            (d / f"{n}.yml").write_text(
                f"name: {n}\nbackend: llamacpp\nmodel: {{source: {gguf}, served_name: {n}}}\n"
                "resources: {device: cpu, max_model_len: 256, max_num_seqs: 1}\n"
                "options: {runtime: xllamacpp, threads: 1, webui: false}\n"
            )
        port = free_port()
        (d / "gw.yml").write_text(
            f"name: idle\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
            f"profiles: [{', '.join(f'{n}.yml' for n in names)}]\n"
            "memory: {host_ram: 8GiB, gpus: []}\nmodels:\n"
            + "".join(f"  {n}: {{preload: true}}\n" for n in names)
        )
        env = {**os.environ, "LLMCTL_STATE_DIR": str(d / "state")}
        gw = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "llmctl"), "gateway", "serve", str(d / "gw.yml")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            if not gw.stdout.readline().startswith("ready"):
                raise RuntimeError("the gateway did not start")
            deadline = time.monotonic() + 120
            while True:
                doc = httpx.get(f"http://127.0.0.1:{port}/v1/models", trust_env=False).json()
                states = [m["llmctl"]["state"] for m in doc["data"]]
                if all(s == "ready" for s in states):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the models did not all load: {states}")
                time.sleep(0.2)
            time.sleep(2)  # the last start's tail (readiness clients closing)
            c0, t0 = cpu_of(gw.pid), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = cpu_of(gw.pid), time.monotonic()
            proc = psutil.Process(gw.pid)
            print(
                f"gateway idle with {args.models} models loaded: CPU "
                f"{(c1 - c0) / (t1 - t0) * 100:.3f} % over {t1 - t0:.0f} s, RSS "
                f"{proc.memory_info().rss / 2**20:.1f} MiB, {proc.num_threads()} threads"
            )
        finally:
            gw.terminate()
            gw.wait(30)


if __name__ == "__main__":
    main()
