"""Cold start through the gateway: request -> first token for a stopped model, against the
engine's own ready time seen by an independent poller in the same run.

A real `llmctl gateway serve` with one llama.cpp profile (the tiny GGUF model on CPU, the
xllamacpp wheel). Each round unloads the model (`llmctl stop GW/PROFILE`), then sends one
streamed chat request through the gateway while a poller thread watches the engine's run
state for its port and polls the engine's own GET /health (which needs no key) every
2 ms. Reported per round and as medians: request -> first token through the gateway,
request -> the engine's health answering 200, and the difference (what the gateway's
start path adds: its readiness ladder's model and completion rungs, then the proxied
request itself).

Run: .venv/bin/python benchmarks/gateway_cold_start.py [--rounds 10] [--gguf FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway_server_choice import free_port  # noqa: E402


def poll_engine(state: Path, t0: float, out: dict, stop: threading.Event) -> None:
    import httpx

    port = None
    with httpx.Client(timeout=0.5, trust_env=False) as c:
        while not stop.is_set():
            if port is None:
                try:
                    doc = json.loads(state.read_text())
                    port = doc.get("port") if doc.get("engine_pid") else None
                except (OSError, ValueError):
                    pass
            else:
                try:
                    if c.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        out["health"] = time.monotonic() - t0
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.002)


def main() -> None:
    import openai

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--gguf", default=os.environ.get("LLMCTL_TINY_GGUF", "/tmp/llmctl-tiny.gguf"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "a.yml").write_text(
            f"name: a\nbackend: llamacpp\nmodel: {{source: {args.gguf}, served_name: a}}\n"
            "resources: {device: cpu, max_model_len: 256, max_num_seqs: 2}\n"
            "options: {runtime: xllamacpp, threads: 1, webui: false}\n"
        )
        port = free_port()
        (d / "gw.yml").write_text(
            f"name: cold\nlisten: {{host: 127.0.0.1, port: {port}}}\nprofiles: [a.yml]\n"
            "defaults: {min_resident: 0}\nmemory: {host_ram: 4GiB, gpus: []}\n"
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
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        rows = []
        try:
            if not gw.stdout.readline().startswith("ready"):
                raise RuntimeError("the gateway did not start")
            state = d / "state" / "runs" / "cold.a.json"
            for i in range(args.rounds):
                subprocess.run([llmctl, "stop", "cold/a"], env=env, capture_output=True)
                seen: dict = {}
                stop = threading.Event()
                t0 = time.monotonic()
                poller = threading.Thread(target=poll_engine, args=(state, t0, seen, stop))
                poller.start()
                first = None
                for chunk in client.chat.completions.create(
                    model="a",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=4,
                    stream=True,
                ):
                    if chunk.choices and chunk.choices[0].delta.content and first is None:
                        first = time.monotonic() - t0
                stop.set()
                poller.join()
                if first is None or "health" not in seen:
                    print(f"round {i}: no first token or no health seen; skipped")
                    continue
                rows.append((first, seen["health"]))
                h = seen["health"]
                print(
                    f"round {i}: first token {first * 1e3:7.1f} ms, engine healthy "
                    f"{h * 1e3:7.1f} ms, difference {(first - h) * 1e3:6.1f} ms"
                )
        finally:
            gw.terminate()
            gw.wait(30)
        if rows:
            f, h = (statistics.median(r[i] for r in rows) for i in range(2))
            diff = statistics.median(r[0] - r[1] for r in rows)
            print(
                f"\nmedian of {len(rows)}: first token {f * 1e3:.1f} ms, engine healthy "
                f"{h * 1e3:.1f} ms, difference {diff * 1e3:.1f} ms"
            )


if __name__ == "__main__":
    main()
