"""`--workers N`: one precomputed schedule, sent by N processes, measured as one run.

One Python event loop parses a few thousand chunks a second; past that the client, not the
server, sets the pace (send lag grows). Like guidellm, the bench can then use more
processes. How:

1. here: find the model, send the check request and the warm-up (as a single-process run);
2. start N worker processes (spawn); each builds its own client and says it is ready;
3. send them one start time `t0` (time.monotonic() is one clock for every process on
   Linux); worker w sends requests w, w+N, w+2N, ... of the same schedule at `t0 + offset`,
   under its share of the concurrency cap (the cap is split as evenly as possible);
4. merge their records (by request index) and assemble the result here, exactly as a
   single-process run does.

Ctrl-C is passed on to the workers, which stop and return what they measured.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import queue
import signal
import time

from llmdeploy_cli.bench import client as bc
from llmdeploy_cli.bench.config import BenchConfig, BenchRun, Progress
from llmdeploy_cli.bench.loop import BenchLoop
from llmdeploy_cli.errors import LlmctlError
from llmdeploy_cli.openai_http.clients import run as run_loop

PROGRESS_EVERY = 0.25  # seconds between a worker's progress messages
START_MARGIN = 0.05  # seconds between handing out t0 and t0 itself


def split_cap(cap: int | None, workers: int) -> list[int | None]:
    """A concurrency cap shared out: 10 over 4 workers -> [3, 3, 2, 2]."""
    if cap is None:
        return [None] * workers
    return [cap // workers + (1 if w < cap % workers else 0) for w in range(workers)]


def run_workers(cfg: BenchConfig, progress: Progress | None = None) -> BenchRun:
    import multiprocessing as mp

    progress = progress or (lambda ev: None)
    n = cfg.workers
    notes: list[str] = []
    if cfg.concurrency is not None and cfg.concurrency < n:
        notes.append(f"--workers {n} > --concurrency {cfg.concurrency}: using {cfg.concurrency}")
        n = cfg.concurrency

    # 1. model, check, warm-up: here, once
    head = BenchLoop(dataclasses.replace(cfg, workers=1), progress)

    async def prepare():
        async with head._client():
            await head.prepare()

    run_loop(prepare())
    if head.interrupted:
        return head._assemble(bc.now(), bc.now())
    forced = "on" if head.force else "off"
    tok_dir = cfg.tokenizer.name if cfg.tokenizer is not None else None
    base = dataclasses.replace(
        cfg, model=head.model, check=False, warmup=0, force_output_len=forced, tokenizer=None
    )
    caps = split_cap(cfg.concurrency, n)
    jobs = [
        dataclasses.replace(base, workers=n, shard=(w, n), concurrency=caps[w]) for w in range(n)
    ]

    # 2. start the workers and wait until each is ready
    ctx = mp.get_context("spawn")
    inbox = ctx.Queue()
    starts = [ctx.Queue() for _ in range(n)]
    procs = [
        ctx.Process(target=_worker, args=(job, tok_dir, inbox, starts[w]), daemon=True)
        for w, job in enumerate(jobs)
    ]
    for p in procs:
        p.start()
    interrupted = False
    sigints = 0

    def on_sigint(signum, frame):  # pass Ctrl-C on; a second one stops everything
        nonlocal interrupted, sigints
        interrupted = True
        sigints += 1
        for p in procs:
            if p.is_alive():
                if sigints > 1:
                    p.kill()
                else:
                    os.kill(p.pid, signal.SIGINT)

    old = signal.signal(signal.SIGINT, on_sigint)
    results: dict[int, tuple] = {}
    done: dict[int, tuple[int, int]] = {}
    try:
        ready = 0
        while ready < n:
            kind, w, *rest = _get(inbox, procs)
            if kind == "ready":
                ready += 1
            elif kind == "error":
                raise LlmctlError(f"bench worker {w} failed to start: {rest[0]}")
        if interrupted:  # Ctrl-C before the start: nothing was measured
            for p in procs:
                p.kill()
            head.interrupted = True
            head.notes.append("interrupted (Ctrl-C) before the run started")
            return head._assemble(bc.now(), bc.now())
        # 3. one start time for all
        t0 = bc.now() + START_MARGIN
        for q in starts:
            q.put(t0)
        progress({"phase": "run", "total": cfg.num_prompts, "duration": cfg.duration})
        while len(results) < n:
            kind, w, *rest = _get(inbox, procs, results)
            if kind == "progress":
                done[w] = tuple(rest)
                progress(
                    {
                        "phase": "request",
                        "done": sum(d for d, _ in done.values()),
                        "failed": sum(f for _, f in done.values()),
                    }
                )
            elif kind == "result":
                results[w] = tuple(rest)
            elif kind == "error":
                raise LlmctlError(f"bench worker {w} failed: {rest[0]}")
    finally:
        signal.signal(signal.SIGINT, old)
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()

    # 4. merge and measure as one run
    for w in sorted(results):
        records, wnotes, lost, intr = results[w]
        head.records += records
        head.server_lost |= lost
        head.interrupted |= intr
        for note in wnotes:
            if note not in head.notes and note not in notes:
                notes.append(note)
    head.interrupted |= interrupted
    if interrupted and not any("interrupted" in x for x in notes):
        notes.append("interrupted (Ctrl-C): the result holds what was measured")
    head.records.sort(key=lambda r: r.index)
    head.notes += notes
    head.notes.append(f"sent by {n} worker processes")
    head.cfg = dataclasses.replace(cfg, workers=n)
    end = max((r.done for r in head.records if r.done is not None), default=bc.now())
    return head._assemble(t0, end)


def _get(inbox, procs, results=None):
    """The next message; a worker that died without a word is an error, not a hang."""
    while True:
        try:
            return inbox.get(timeout=0.5)
        except queue.Empty:
            for w, p in enumerate(procs):
                if not p.is_alive() and (results is None or w not in results):
                    try:
                        return inbox.get(timeout=0.5)  # its last message may be in flight
                    except queue.Empty:
                        return ("error", w, f"exited with code {p.exitcode}")


async def _open_connection(run: BenchLoop) -> None:
    """Open one keep-alive connection before t0, so the first request does not pay for it."""
    try:
        await bc.list_models(run.client, run.cfg.base_url)
    except OSError:
        pass  # the schedule's requests will say what is wrong


def _worker(cfg: BenchConfig, tok_dir: str | None, inbox, start) -> None:
    """One worker process: build the client, wait for t0, send its shard, send records back."""
    w = cfg.shard[0]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the run's own handler is in place
    try:
        if tok_dir:
            from llmdeploy_cli.bench.workload import load_tokenizer

            cfg = dataclasses.replace(cfg, tokenizer=load_tokenizer(tok_dir))
        last = [0.0]
        counts = {"done": 0, "failed": 0}

        def progress(ev: dict) -> None:
            if ev.get("phase") != "request":
                return
            counts["done"], counts["failed"] = ev["done"], ev["failed"]
            t = time.monotonic()
            if t - last[0] >= PROGRESS_EVERY:
                last[0] = t
                inbox.put(("progress", w, ev["done"], ev["failed"]))

        run = BenchLoop(cfg, progress)

        async def main():
            async with run._client():
                await _open_connection(run)
                inbox.put(("ready", w))
                loop = asyncio.get_running_loop()
                t0 = await loop.run_in_executor(None, start.get)
                await run.measure(t0)

        gc.collect()
        gc.freeze()
        run_loop(main())
        for r in run.records:
            r.text = ""  # counted already; no need to ship it back
        inbox.put(("progress", w, counts["done"], counts["failed"]))
        inbox.put(("result", w, run.records, run.notes, run.server_lost, run.interrupted))
    except Exception as e:  # noqa: BLE001 - reported by the parent as one line
        inbox.put(("error", w, f"{type(e).__name__}: {e}"))


__all__ = ["run_workers", "split_cap"]
