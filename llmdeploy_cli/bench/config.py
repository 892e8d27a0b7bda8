"""What a bench run is given (BenchConfig) and what it returns (BenchRun), and the checks
on a configuration before anything is sent."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from llmdeploy_cli.bench.metrics import PERCENTILES, RequestRecord
from llmdeploy_cli.bench.workload import Tokenizer, Workload
from llmdeploy_cli.errors import UsageError

LOST_AFTER = 3  # refused connections in a row, with nothing served since: the server is gone


@dataclass
class BenchConfig:
    base_url: str  # OpenAI root, e.g. http://127.0.0.1:8000/v1
    model: str | None
    workload: Workload
    api_key: str | None = None
    concurrency: int | None = None
    request_rate: float = math.inf
    burstiness: float = 1.0
    num_prompts: int | None = None
    duration: float | None = None
    warmup: int = 0
    goodput: dict[str, float] = field(default_factory=dict)
    force_output_len: str = "auto"  # auto | on | off
    seed: int = 0
    timeout: float = 300.0
    tokenizer: Tokenizer | None = None
    check: bool = True
    percentiles: tuple = PERCENTILES
    detailed: bool = False
    task: str = "chat"  # chat | embedding
    batch_size: int = 1  # embedding: texts per request
    workers: int = 1  # processes sending the schedule
    shard: tuple[int, int] = (0, 1)  # (this worker, workers): set by the worker pool


@dataclass
class BenchRun:
    result: dict
    records: list[RequestRecord]
    server_lost: bool = False
    interrupted: bool = False


Progress = Callable[[dict], None]


def validate(cfg: BenchConfig) -> None:
    if cfg.num_prompts is None and cfg.duration is None:
        raise UsageError("give --num-prompts or --duration")
    if cfg.num_prompts is not None and cfg.num_prompts <= 0:
        raise UsageError("--num-prompts must be > 0")
    if cfg.duration is not None and cfg.duration <= 0:
        raise UsageError("--duration must be > 0")
    if cfg.concurrency is not None and cfg.concurrency <= 0:
        raise UsageError("--concurrency must be > 0")
    if not cfg.request_rate > 0:
        raise UsageError("--request-rate must be > 0 (or inf)")
    if not cfg.burstiness > 0:
        raise UsageError("--burstiness must be > 0")
    if cfg.concurrency is None and math.isinf(cfg.request_rate) and cfg.duration is not None:
        raise UsageError(
            "--duration needs --concurrency or --request-rate",
            hint="an unbounded burst has no end: cap it with --concurrency N",
        )
    if not cfg.workload.prompts:
        raise UsageError("no prompts to send")
    if cfg.task not in ("chat", "embedding"):
        raise UsageError(f"bench measures chat and embedding endpoints, not '{cfg.task}'")
    if cfg.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    if cfg.workers < 1:
        raise UsageError("--workers must be >= 1")


def measure(cfg: BenchConfig, records: list[RequestRecord], duration: float) -> tuple[dict, dict]:
    """The figures of `records` over `duration` (vLLM's keys, and the `llmctl` block), as
    the run's task and settings ask: a run's own, or K runs merged (`--repeat`)."""
    from llmdeploy_cli.bench.metrics import compute, compute_embeddings

    if cfg.task == "embedding":
        res, extra = compute_embeddings(records, duration, percentiles=cfg.percentiles)
        extra["embedding"]["batch_size"] = cfg.batch_size
        return res, extra
    return compute(
        records, duration, goodput=cfg.goodput, percentiles=cfg.percentiles,
        queue_metrics=cfg.concurrency is not None,
    )  # fmt: skip


__all__ = ["BenchConfig", "BenchRun", "LOST_AFTER", "Progress", "measure", "validate"]
