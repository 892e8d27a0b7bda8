"""One event loop's bench: check the endpoint, warm up, send on schedule, assemble.

`BenchLoop` is what `runner.run_bench` drives in one process, and what each worker process
of `--workers N` drives for its shard of the schedule (bench/workers.py). The order, the
failure handling and the result are described in bench/runner.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import threading
from datetime import datetime

from llmdeploy_cli.bench import client as bc
from llmdeploy_cli.bench.config import LOST_AFTER, BenchConfig, BenchRun, Progress, measure
from llmdeploy_cli.bench.metrics import RequestRecord
from llmdeploy_cli.bench.noise import samples
from llmdeploy_cli.bench.schedule import arrivals, schedule
from llmdeploy_cli.bench.workload import Prompt
from llmdeploy_cli.errors import LlmctlError, UnreachableError, UsageError
from llmdeploy_cli.openai_http.failures import CONNECT, TransportFailure, unreachable_error
from llmdeploy_cli.openai_http.wire import looks_like_model_error

REFUSED = TransportFailure(CONNECT, "connection refused")

SIZE_PROBES = (16, 64)  # words in the two prompts that measure the server's tokens per word


class BenchLoop:
    def __init__(self, cfg: BenchConfig, progress: Progress | None):
        self.cfg = cfg
        self.progress = progress or (lambda ev: None)
        self.embedding = cfg.task == "embedding"
        path = "/embeddings" if self.embedding else "/chat/completions"
        self.url = cfg.base_url.rstrip("/") + path
        self.records: list[RequestRecord] = []
        self.tasks: set[asyncio.Task] = set()
        self.force = cfg.force_output_len != "off" and not self.embedding
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
    def _note(self, text: str) -> None:
        """A note for the result, and for the progress callback at once (a CI log sees it
        when it happens, not at the end)."""
        self.notes.append(text)
        self.progress({"phase": "note", "text": text})

    def _prompt(self, i: int) -> Prompt:
        ps = self.cfg.workload.prompts
        return ps[i % len(ps)]

    def _max_connections(self) -> int:
        if self.cfg.concurrency:
            return max(self.cfg.concurrency, 1)
        if self.cfg.num_prompts:
            return max(self.cfg.num_prompts, 1)
        return 4096

    def _batch(self, i: int) -> list[Prompt]:
        """Embeddings: the texts of request i (batch_size prompts, taken in turn)."""
        b = self.cfg.batch_size
        return [self._prompt(i * b + k) for k in range(b)]

    async def _send(self, rec: RequestRecord, prompt: Prompt, force: bool | None = None):
        if self.embedding:
            return await self._send_embeddings(rec, self._batch(max(rec.index, 0)))
        body = bc.request_body(self.model, prompt, self.force if force is None else force)
        return await bc.send(
            self.client, self.url, body, rec, self.cfg.tokenizer, prompt.prompt_len
        )

    async def _send_embeddings(self, rec: RequestRecord, batch: list[Prompt]):
        texts = [p.messages[-1].get("content") or "" for p in batch]
        await bc.send_embeddings(self.client, self.url, bc.embeddings_body(self.model, texts), rec)
        lens = [p.prompt_len for p in batch]
        if rec.ok and rec.prompt_source is None and all(n is not None for n in lens):
            rec.prompt_tokens, rec.prompt_source = sum(lens), "local"
        return rec

    # -- the run -------------------------------------------------------------------------------
    async def main(self) -> BenchRun:
        """Prepare (model, check, warm-up), then measure, then the result."""
        async with self._client():
            await self.prepare()
            t0 = bc.now()
            await self.measure(t0)
            end = bc.now()
        return self._assemble(t0, end)

    @contextlib.asynccontextmanager
    async def _client(self):
        cfg = self.cfg
        self._install_sigint()
        try:
            session = bc.make_client(
                self._max_connections(), cfg.timeout, cfg.api_key, url=cfg.base_url
            )
            async with session as c:
                self.client = c
                yield
        finally:
            self._remove_sigint()

    async def prepare(self) -> None:
        cfg = self.cfg
        if not self.model:
            self.model = await self._first_model()
        words = cfg.workload.source == "random-words" and cfg.workload.input_lens is not None
        if cfg.check and not self.embedding and words:
            await self._size_words()
        if cfg.check and not self.embedding:
            await self._check_context()
        for text in cfg.workload.notes:  # how the prompts were made, said before the run
            self.progress({"phase": "note", "text": text})
        if cfg.check:
            await self._check()
        if cfg.warmup and not self.interrupted:
            await self._warmup()

    async def measure(self, t0: float) -> None:
        """Send the (shard of the) schedule from t0 and wait for every answer."""
        if self.interrupted:
            return
        self.dispatcher = asyncio.create_task(self._dispatch(t0))
        try:
            await self.dispatcher
        except asyncio.CancelledError:
            if not (self.interrupted or self.server_lost):
                raise
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        for rec in self.records:
            # A task cancelled (Ctrl-C, lost server) before it ever ran never reached its
            # own handler: it was not sent, so it is interrupted, not a failure.
            if not rec.ok and rec.error_class is None:
                rec.error_class, rec.error = "interrupted", "cancelled before it was sent"

    async def _first_model(self) -> str:
        ids = await self._list_models()
        if ids is None:
            raise LlmctlError(
                f"no --model given, and {self.cfg.base_url}/models gave no model list",
                hint="pass --model NAME (the exact name requests must carry)",
            )
        if not ids:
            raise LlmctlError(f"{self.cfg.base_url}/models lists no model", hint="pass --model")
        self._note(f"no --model given: using the first listed model, '{ids[0]}'")
        return ids[0]

    async def _list_models(self) -> list[str] | None:
        try:
            return await bc.list_models(self.client, self.cfg.base_url)
        except ConnectionRefusedError:
            raise self._unreachable() from None

    def _unreachable(self, rec: RequestRecord | None = None) -> UnreachableError:
        """The server did not take the connection (`rec`: the request that says how)."""
        f = TransportFailure(rec.error_class, rec.error) if rec else REFUSED
        return unreachable_error(f, self.cfg.base_url)

    async def _size_words(self) -> None:
        """Random words with no local tokenizer: two probe prompts (SIZE_PROBES words, one
        token asked) and the server's usage.prompt_tokens give its tokens per word and the
        chat template's share; the prompts are remade to their token lengths with that.
        A server that counts no usage (or refuses the probes) leaves them as words."""
        import random

        from llmdeploy_cli.bench.workload import WORDS, size_words

        rng = random.Random(self.cfg.seed + 7)
        counts = []
        for k, n in enumerate(SIZE_PROBES):
            text = " ".join(rng.choice(WORDS) for _ in range(n))
            rec = RequestRecord(-1, request_id=f"llmctl-size-{self.run_id}-{k}")
            await self._send(rec, Prompt([{"role": "user", "content": text}], None, 1), False)
            if rec.error_class in ("connect", "connect_timeout"):
                raise self._unreachable(rec)
            if not rec.ok or rec.prompt_source != "usage":
                return
            counts.append(rec.prompt_tokens)
        (n1, n2), (t1, t2) = SIZE_PROBES, counts
        per_word = (t2 - t1) / (n2 - n1)
        if per_word <= 0:
            return
        size_words(self.cfg.workload, per_word, t1 - n1 * per_word, self.cfg.seed, 2)
        self.notes = [n for n in self.notes if not n.startswith("no local tokenizer")]
        self._note(self.cfg.workload.notes[-1])

    async def _check_context(self) -> None:
        """Where the server says its context length, refuse prompts that cannot fit."""
        try:
            doc = await bc.models_doc(self.client, self.cfg.base_url)
        except ConnectionRefusedError:
            raise self._unreachable() from None
        ctx = bc.context_length(doc, self.model)
        if ctx is None:
            return
        words = self.cfg.workload.source == "random-words"
        need = 0
        for p in self.cfg.workload.prompts:
            # without a tokenizer a word is at least one token: a lower bound
            n = p.prompt_len
            if n is None and words:
                n = len((p.messages[-1].get("content") or "").split())
                sz = self.cfg.workload.sizing or {}
                if sz.get("by") == "server-usage":  # the server's own count, as measured
                    n = round(n * sz["tokens_per_word"] + sz["template_tokens"])
            need = max(need, (n or 0) + (p.output_len or 0))
        self._note(f"the server gives '{self.model}' a context of {ctx} tokens")
        if need > ctx:
            raise UsageError(
                f"the prompts need up to {need} tokens (input + output) but the server gives "
                f"'{self.model}' a context of {ctx} tokens",
                hint="lower --input-len / --output-len so that both fit",
            )

    async def _check(self) -> None:
        """One request before the run, to fail early and clearly on a bad URL/model/key."""
        p0 = self._prompt(0)
        probe = Prompt(p0.messages, p0.prompt_len, min(p0.output_len or 4, 4))
        check = RequestRecord(-1, request_id=f"llmctl-check-{self.run_id}")
        if self.embedding:
            rec = await self._send_embeddings(check, [p0])
        else:
            rec = await self._send(check, probe)
        if rec.error_class in ("connect", "connect_timeout"):
            raise self._unreachable(rec)
        if rec.status is not None and looks_like_model_error(
            rec.status, rec.error or "", self.model
        ):
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
                self._note(
                    f"the server refused ignore_eos/min_tokens ({rec.status}: {rec.error}); "
                    "output length is not forced, answers may stop early"
                )
                return
            if again.status is not None and again.status != rec.status:
                rec = again  # refused for another reason once the extensions were gone
        if rec.status is not None and looks_like_model_error(
            rec.status, rec.error or "", self.model
        ):  # again: a server may refuse the extensions before it looks at the model
            raise await self._model_error(rec)
        if rec.status is not None and 400 <= rec.status < 500 and rec.status not in (408, 429):
            # The request itself is refused: every request of the run would be. Stop now,
            # with the server's own words.
            raise LlmctlError(
                f"the server refused the first request (HTTP {rec.status}): {rec.error}",
                hint="nothing was measured; fix what the server names (a prompt longer than "
                "the model's context: lower --input-len/--output-len, or pass --tokenizer "
                "for exact token lengths)",
            )
        if not rec.ok:
            self._note(f"the check request failed ({rec.error_class}: {rec.error})")

    async def _model_error(self, rec: RequestRecord) -> LlmctlError:
        ids = await self._list_models()
        if ids is None:
            return LlmctlError(
                f"{self.url} answered {rec.status} ({rec.error})",
                hint="is this an OpenAI-compatible root? --url usually ends with /v1",
            )
        if self.model not in ids:
            listed = ", ".join(ids) if ids else "none"
            return UsageError(
                f"model '{self.model}' is not served at {self.cfg.base_url} ({rec.status}); "
                f"it serves: {listed}",
                hint=f"pass --model {ids[0]}" if ids else None,
            )
        return LlmctlError(
            f"{self.url} answered {rec.status} for model '{self.model}': {rec.error}"
        )

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
        mine, shards = cfg.shard
        g = -1
        while n is None or g + 1 < n:
            off = next(offsets)
            g += 1
            if cfg.duration is not None and off >= cfg.duration:
                break
            if g % shards != mine:
                continue
            i = g
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
        self._note(
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
        if self.interrupted:  # a worker may hear it twice (terminal and parent)
            return
        self.interrupted = True
        self._note("interrupted (Ctrl-C): the result holds what was measured")
        if self.cfg.shard[1] == 1:
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
        res, extra = measure(cfg, recs, duration)
        kind = "openai-embeddings" if self.embedding else "openai-chat"
        result = {
            "date": f"{datetime.now():%Y%m%d-%H%M%S}",
            "endpoint_type": kind,
            "backend": kind,
            "label": None,
            "model_id": self.model,
            "tokenizer_id": cfg.workload.tokenizer_id,
            "num_prompts": cfg.num_prompts if cfg.num_prompts is not None else len(recs),
            "request_rate": cfg.request_rate if not math.isinf(cfg.request_rate) else "inf",
            "burstiness": cfg.burstiness,
            "max_concurrency": cfg.concurrency,
            **res,
        }
        if cfg.detailed and self.embedding:
            result.update(
                {
                    "input_lens": [r.prompt_tokens for r in recs],
                    "latencies": [r.e2el or 0.0 for r in recs],
                    "start_times": [r.sent for r in recs],
                    "errors": [r.error or "" for r in recs],
                }
            )
        elif cfg.detailed:
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
                    "sizing": cfg.workload.sizing,
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
                    "task": cfg.task,
                    "batch_size": cfg.batch_size if self.embedding else None,
                    "workers": cfg.workers,
                },
                "notes": self.notes,
                # per-request latencies: what a --baseline gate's bootstrap resamples
                "samples": {"runs": [samples(recs)]},
            }
        )
        result["llmctl"] = extra
        return BenchRun(result, recs, self.server_lost, self.interrupted)


__all__ = ["BenchLoop"]
