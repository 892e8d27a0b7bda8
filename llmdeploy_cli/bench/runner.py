"""The bench run: check the endpoint, warm up, send on schedule, measure, assemble the result.

Order of a run:
1. a check request (excluded from the result): refused connection -> UnreachableError
   (exit 5); 404 -> which models the server has; 401/403 -> the key; 400/422 while forcing
   the output length -> say so and run without ignore_eos/min_tokens;
2. `warmup` requests (excluded);
3. the measured run on the precomputed schedule, under the concurrency cap;
4. metrics (vLLM key names) plus the `llmctl` block.

A run that loses its server (several refused connections in a row) stops sending and
returns what it measured, failures counted; Ctrl-C (SIGINT) does the same, with the
requests in flight marked interrupted. The core never prints: progress goes through the
`progress` callback.

Embeddings (`task="embedding"`): each request POSTs `batch_size` texts to /v1/embeddings;
latency is E2E only, throughput in requests, inputs and prompt tokens per second.

Workers (`workers=N`): steps 1-2 run here, then N processes each send every N-th request
of the same precomputed schedule (request i goes to worker i % N), all against one start
time on the shared monotonic clock; a concurrency cap is split between them. Their records
are merged and measured as one run, so the result is the same document.
"""

from __future__ import annotations

from llmdeploy_cli.bench.config import LOST_AFTER, BenchConfig, BenchRun, Progress, validate


def run_bench(cfg: BenchConfig, progress: Progress | None = None) -> BenchRun:
    """Run synchronously (own event loop). Raises LlmctlError for a run that cannot start."""
    import gc

    from llmdeploy_cli.openai_http.clients import run

    validate(cfg)
    if cfg.workers > 1:
        from llmdeploy_cli.bench.workers import run_workers

        return run_workers(cfg, progress)
    from llmdeploy_cli.bench.loop import BenchLoop

    # Move everything alive now out of the collector's sight (as vLLM's bench does), so a
    # full collection during the run is short and never stalls a chunk's timestamp.
    gc.collect()
    gc.freeze()
    try:
        return run(BenchLoop(cfg, progress).main())
    finally:
        gc.unfreeze()


__all__ = ["BenchConfig", "BenchRun", "LOST_AFTER", "Progress", "run_bench"]
