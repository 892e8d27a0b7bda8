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
"""

from __future__ import annotations

import asyncio
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from llmdeploy_cli.bench import client as bc
from llmdeploy_cli.bench.metrics import PERCENTILES, RequestRecord, compute
from llmdeploy_cli.bench.schedule import arrivals, schedule
from llmdeploy_cli.bench.workload import Prompt, Tokenizer, Workload
from llmdeploy_cli.errors import LlmctlError, UnreachableError, UsageError

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


@dataclass
class BenchRun:
    result: dict
    records: list[RequestRecord]
    server_lost: bool = False
    interrupted: bool = False


Progress = Callable[[dict], None]


def run_bench(cfg: BenchConfig, progress: Progress | None = None) -> BenchRun:
    """Run synchronously (own event loop). Raises LlmctlError for a run that cannot start."""
    import gc

    _validate(cfg)
    # Move everything alive now out of the collector's sight (as vLLM's bench does), so a
    # full collection during the run is short and never stalls a chunk's timestamp.
    gc.collect()
    gc.freeze()
    try:
        return asyncio.run(_Run(cfg, progress).main())
    finally:
        gc.unfreeze()


def _validate(cfg: BenchConfig) -> None:
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


class _Run:
    def __init__(self, cfg: BenchConfig, progress: Progress | None):
        self.cfg = cfg
        self.progress = progress or (lambda ev: None)
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.records: list[RequestRecord] = []
        self.tasks: set[asyncio.Task] = set()
        self.force = cfg.force_output_len != "off"
        self.notes: list[str] = list(cfg.workload.notes)
        self.server_lost = False
        self.interrupted = False
        self.refused_in_a_row = 0
        self.done = 0
        self.failed = 0
        self.dispatcher: asyncio.Task | None = None
        self.model = cfg.model or ""
        self.run_id = f"{datetime.now():%H%M%S}"

    # -- plumbing ------------------------------------------------------------------------------
    def _prompt(self, i: int) -> Prompt:
        ps = self.cfg.workload.prompts
        return ps[i % len(ps)]

    def _max_connections(self) -> int:
        if self.cfg.concurrency:
            return max(self.cfg.concurrency, 1)
        if self.cfg.num_prompts:
            return max(self.cfg.num_prompts, 1)
        return 4096

    async def _send(self, rec: RequestRecord, prompt: Prompt, force: bool | None = None):
        body = bc.request_body(self.model, prompt, self.force if force is None else force)
        return await bc.send(
            self.client, self.url, body, rec, self.cfg.tokenizer, prompt.prompt_len
        )

    # -- the run -------------------------------------------------------------------------------
    async def main(self) -> BenchRun:
        cfg = self.cfg
        self._install_sigint()
        async with bc.make_client(self._max_connections(), cfg.timeout, cfg.api_key) as client:
            self.client = client
            try:
                if not self.model:
                    self.model = await self._first_model()
                if cfg.check:
                    await self._check()
                if cfg.warmup and not self.interrupted:
                    await self._warmup()
                t0 = bc.now()
                if not self.interrupted:
                    self.dispatcher = asyncio.create_task(self._dispatch(t0))
                    try:
                        await self.dispatcher
                    except asyncio.CancelledError:
                        if not (self.interrupted or self.server_lost):
                            raise
                    while self.tasks:
                        await asyncio.gather(*list(self.tasks), return_exceptions=True)
                end = bc.now()
            finally:
                self._remove_sigint()
        return self._assemble(t0, end)

    async def _first_model(self) -> str:
        ids = await self._list_models()
        if ids is None:
            raise LlmctlError(
                f"no --model given, and {self.cfg.base_url}/models gave no model list",
                hint="pass --model NAME (the exact name requests must carry)",
            )
        if not ids:
            raise LlmctlError(f"{self.cfg.base_url}/models lists no model", hint="pass --model")
        self.notes.append(f"no --model given: using the first listed model, '{ids[0]}'")
        return ids[0]

    async def _list_models(self) -> list[str] | None:
        import httpx

        try:
            r = await self.client.get(self.cfg.base_url.rstrip("/") + "/models", timeout=10.0)
        except httpx.ConnectError:
            raise self._unreachable() from None
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        try:
            return [str(m.get("id")) for m in r.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            return None

    def _unreachable(self) -> UnreachableError:
        return UnreachableError(
            f"cannot reach {self.cfg.base_url}: connection refused",
            hint="is the server running? `llmctl serve FILE` starts it; check host and port",
        )

    async def _check(self) -> None:
        """One request before the run, to fail early and clearly on a bad URL/model/key."""
        p0 = self._prompt(0)
        probe = Prompt(p0.messages, p0.prompt_len, min(p0.output_len or 4, 4))
        rec = await self._send(RequestRecord(-1, request_id=f"llmctl-check-{self.run_id}"), probe)
        if rec.error_class in ("connect", "connect_timeout"):
            raise self._unreachable()
        if rec.status == 404:
            raise await self._model_error(rec)
        if rec.status in (401, 403):
            raise LlmctlError(
                f"the server refused the request ({rec.status}): {rec.error}",
                hint="set the API key: the profile's server.api_key_env, or --api-key-env NAME",
            )
        if rec.status in (400, 422) and self.force and self.cfg.force_output_len == "auto":
            again = await self._send(RequestRecord(-1), probe, force=False)
            if again.ok:
                self.force = False
                self.notes.append(
                    f"the server refused ignore_eos/min_tokens ({rec.status}: {rec.error}); "
                    "output length is not forced, answers may stop early"
                )
                return
        if not rec.ok:
            self.notes.append(f"the check request failed ({rec.error_class}: {rec.error})")

    async def _model_error(self, rec: RequestRecord) -> LlmctlError:
        ids = await self._list_models()
        if ids is None:
            return LlmctlError(
                f"{self.url} answered 404 ({rec.error})",
                hint="is this an OpenAI-compatible root? --url usually ends with /v1",
            )
        if self.model not in ids:
            listed = ", ".join(ids) if ids else "none"
            return UsageError(
                f"model '{self.model}' is not served at {self.cfg.base_url} (404); "
                f"it serves: {listed}",
                hint=f"pass --model {ids[0]}" if ids else None,
            )
        return LlmctlError(f"{self.url} answered 404 for model '{self.model}': {rec.error}")

    async def _warmup(self) -> None:
        n = self.cfg.warmup
        sem = asyncio.Semaphore(min(n, self.cfg.concurrency or n))
        self.progress({"phase": "warmup", "total": n})

        async def one(i: int):
            async with sem:
                await self._send(
                    RequestRecord(-1, request_id=f"llmctl-warmup-{i}"), self._prompt(i)
                )

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        self.warmup_tasks = tasks
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _dispatch(self, t0: float) -> None:
        cfg = self.cfg
        n = cfg.num_prompts
        if n is not None:
            offsets = iter(schedule(n, cfg.request_rate, cfg.burstiness, cfg.seed))
        else:
            offsets = arrivals(cfg.request_rate, cfg.burstiness, cfg.seed)
        sem = asyncio.Semaphore(cfg.concurrency) if cfg.concurrency else None
        self.progress({"phase": "run", "total": n, "duration": cfg.duration})
        i = 0
        while n is None or i < n:
            off = next(offsets)
            if cfg.duration is not None and off >= cfg.duration:
                break
            due = t0 + off
            delay = due - bc.now()
            if delay > 0:
                await asyncio.sleep(delay)
            if sem is not None:
                await sem.acquire()
            slot = bc.now()
            if cfg.duration is not None and slot - t0 >= cfg.duration:
                if sem is not None:
                    sem.release()
                break
            rec = RequestRecord(i, due=due, slot=slot, request_id=f"llmctl-{self.run_id}-{i}")
            self.records.append(rec)
            task = asyncio.create_task(self._one(rec, self._prompt(i), sem))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            i += 1
            if delay <= 0:
                await asyncio.sleep(0)  # let the sends start in order

    async def _one(self, rec: RequestRecord, prompt: Prompt, sem) -> None:
        try:
            await self._send(rec, prompt)
        except asyncio.CancelledError:
            rec.error_class = rec.error_class or "interrupted"
            rec.error = rec.error or "stopped before the answer ended"
            if rec.sent == 0:
                rec.sent = bc.now()
        finally:
            if sem is not None:
                sem.release()
        self.done += 1
        if rec.ok:
            self.refused_in_a_row = 0
        elif rec.error_class != "interrupted":
            self.failed += 1
            if rec.error_class == "connect":
                self.refused_in_a_row += 1
                if self.refused_in_a_row >= LOST_AFTER and not self.server_lost:
                    self._lose_server()
        self.progress({"phase": "request", "done": self.done, "failed": self.failed, "rec": rec})

    def _lose_server(self) -> None:
        self.server_lost = True
        self.notes.append(
            f"lost the server: {LOST_AFTER} connections in a row were refused; "
            "stopped sending, the result is partial"
        )
        if self.dispatcher is not None and not self.dispatcher.done():
            self.dispatcher.cancel()

    # -- Ctrl-C --------------------------------------------------------------------------------
    def _install_sigint(self) -> None:
        self._sigint = False
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)
            self._sigint = True
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            pass

    def _remove_sigint(self) -> None:
        if self._sigint:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
            self._sigint = False

    def _on_sigint(self) -> None:
        self.interrupted = True
        self.notes.append("interrupted (Ctrl-C): the result holds what was measured")
        self._remove_sigint()  # a second Ctrl-C stops at once
        if self.dispatcher is not None:
            self.dispatcher.cancel()
        for t in list(self.tasks) + list(getattr(self, "warmup_tasks", [])):
            t.cancel()

    # -- the result ----------------------------------------------------------------------------
    def _assemble(self, t0: float, end: float) -> BenchRun:
        cfg = self.cfg
        recs = self.records
        ends = [r.done for r in recs if r.done is not None]
        duration = (max(ends) if ends else end) - t0
        queue = cfg.concurrency is not None
        res, extra = compute(
            recs, duration, goodput=cfg.goodput, percentiles=cfg.percentiles, queue_metrics=queue
        )
        result = {
            "date": f"{datetime.now():%Y%m%d-%H%M%S}",
            "endpoint_type": "openai-chat",
            "backend": "openai-chat",
            "label": None,
            "model_id": self.model,
            "tokenizer_id": cfg.workload.tokenizer_id,
            "num_prompts": cfg.num_prompts if cfg.num_prompts is not None else len(recs),
            "request_rate": cfg.request_rate if not math.isinf(cfg.request_rate) else "inf",
            "burstiness": cfg.burstiness,
            "max_concurrency": cfg.concurrency,
            **res,
        }
        if cfg.detailed:
            result.update(
                {
                    "input_lens": [r.prompt_tokens for r in recs],
                    "output_lens": [r.output_tokens for r in recs],
                    "ttfts": [r.ttft or 0.0 for r in recs],
                    "itls": [r.itls for r in recs],
                    "latencies": [r.e2el or 0.0 for r in recs],
                    "start_times": [r.sent for r in recs],
                    "errors": [r.error or "" for r in recs],
                }
            )
        sent = sum(1 for r in recs if r.sent > 0)
        extra.update(
            {
                "url": cfg.base_url,
                "forced_output_len": self.force,
                "server_lost": self.server_lost,
                "interrupted": self.interrupted,
                "sent": sent,
                "not_sent": (cfg.num_prompts - len(recs)) if cfg.num_prompts else 0,
                "workload": {
                    "source": cfg.workload.source,
                    "prompts": len(cfg.workload.prompts),
                },
                "config": {
                    "concurrency": cfg.concurrency,
                    "request_rate": result["request_rate"],
                    "burstiness": cfg.burstiness,
                    "num_prompts": cfg.num_prompts,
                    "duration_s": cfg.duration,
                    "warmup": cfg.warmup,
                    "goodput_ms": cfg.goodput or None,
                    "seed": cfg.seed,
                    "timeout_s": cfg.timeout,
                    "force_output_len": cfg.force_output_len,
                    "percentiles": list(cfg.percentiles),
                },
                "notes": self.notes,
            }
        )
        result["llmctl"] = extra
        return BenchRun(result, recs, self.server_lost, self.interrupted)


__all__ = ["BenchConfig", "BenchRun", "run_bench", "LOST_AFTER"]
