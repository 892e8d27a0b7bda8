"""`--repeat K`: the same measurement K times back to back, reported as one result.

Why: on a machine whose load changes (other jobs, CI neighbours), latencies move between
runs by far more than the sampling noise inside one run, and a single run cannot see
that. K runs give the result its run-to-run spread: the merged figures are over every
request of every run, `llmctl.samples.runs` keeps each run's requests apart, and a
baseline gate resamples runs first, then requests within them (bench/noise.py), so a
change within the spread the runs showed does not fail it.
"""

from __future__ import annotations

from llmdeploy_cli.bench.config import BenchConfig, BenchRun, measure


def merge(cfg: BenchConfig, runs: list[BenchRun]) -> BenchRun:
    """One BenchRun of K runs of `cfg`: figures over all their requests; the duration is
    the sum of theirs (the time spent measuring); each run's samples and figures kept."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0].result
    records = [r for run in runs for r in run.records]
    res, extra = measure(cfg, records, sum(run.result["duration"] for run in runs))
    x = dict(first["llmctl"])
    x.update(extra)
    x["samples"] = {"runs": [s for run in runs for s in run.result["llmctl"]["samples"]["runs"]]}
    x["sent"] = sum(run.result["llmctl"]["sent"] for run in runs)
    x["not_sent"] = sum(run.result["llmctl"]["not_sent"] for run in runs)
    x["notes"] = list(dict.fromkeys(n for run in runs for n in run.result["llmctl"]["notes"]))
    x["repeat"] = {
        "runs": len(runs),
        "per_run": [
            {k: run.result.get(k) for k in ("duration", "completed", "failed", *HEADLINE)}
            for run in runs
        ],
    }
    result = {**first, **res, "num_prompts": sum(run.result["num_prompts"] for run in runs)}
    result["llmctl"] = x
    return BenchRun(
        result,
        records,
        server_lost=any(run.server_lost for run in runs),
        interrupted=any(run.interrupted for run in runs),
    )


HEADLINE = (
    "request_throughput",
    "output_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
)

__all__ = ["merge"]
