"""The fleet: the one owner of every model's lifecycle.

    stopped -> starting -> ready (in flight: n) -> stopping -> stopped
    failed (with backoff; the next request after it tries again)

Everything here runs on the gateway's event loop, so state has one owner: requests call
`lease()` and await; they never change a model's state themselves. One start per model
(every request that arrives meanwhile awaits the same task); starts that need memory are
served in arrival order (the head of the start queue decides; the others wait), so two
models alternating cannot starve a third. Evictions follow the fit (fit.py); a model with
requests in flight is never stopped for another. Idle models are stopped after their ttl.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field

from llmdeploy_cli.gateway import fit, sizing

log = logging.getLogger("llmctl.gateway")

STOPPED, STARTING, READY, STOPPING, FAILED = "stopped", "starting", "ready", "stopping", "failed"


class GatewayError(Exception):
    """A request the gateway answers itself: HTTP status, OpenAI error type, message."""

    status = 503
    type = "service_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.hint = hint


class QueueFull(GatewayError):
    status = 429
    type = "rate_limit_exceeded"


class QueueTimeout(GatewayError):
    status = 503
    type = "timeout"


class StartFailed(GatewayError):
    status = 502
    type = "engine_failed"


class NeverFits(GatewayError):
    status = 503
    type = "insufficient_memory"


class ShuttingDown(GatewayError):
    status = 503


class _Unwanted(Exception):
    """Every request that wanted a queued start gave up: the start is dropped."""


@dataclass
class Slot:
    """One model's state. Only the fleet changes it."""

    model: object  # config.GatewayModel
    need: dict[str, int]
    state: str = STOPPED
    handle: object = None
    in_flight: int = 0
    queued: int = 0
    last_used: float = 0.0
    loaded_at: float = 0.0
    phase: str = ""  # readiness step while starting
    error: BaseException | None = None
    failures: int = 0
    retry_at: float = 0.0
    start_task: asyncio.Task | None = None
    stop_task: asyncio.Task | None = None
    waiters: collections.deque = field(default_factory=collections.deque)
    draining: bool = False  # removed by a reload: stop once idle

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def policy(self):
        return self.model.policy

    def resident(self) -> fit.Resident:
        return fit.Resident(
            self.name,
            self.need,
            last_used=self.last_used,
            loaded_at=self.loaded_at,
            in_flight=self.in_flight + (1 if self.state == STARTING else 0),
            pin=self.model.pin,
            evictable=self.model.evictable,
            stopping=self.state == STOPPING,
            min_resident=self.policy.min_resident,
        )


class Lease:
    def __init__(self, fleet: Fleet, slot: Slot):
        self.fleet, self.slot, self.name = fleet, slot, slot.name
        self.upstream = slot.handle

    def release(self) -> None:
        if self.slot is not None:
            self.fleet._release(self.slot)
            self.slot = None


CRASH_CHECK_S = 1.0  # how often an idle gateway looks for engines that exited


class Fleet:
    def __init__(
        self,
        models,
        budgets: dict[str, int],
        needs: dict,
        starter,
        *,
        metrics=None,
        gpu_query=None,
    ):
        """`starter(model)` -> Handle, called in a worker thread (it may not use the loop);
        a starter with `sizes = True` is called as `starter(model, need, gpus)` to size the
        engine (sizing.py). `gpu_query()` lists the GPUs (models/gpus.py's figures); by
        default asked when a budget is a GPU's."""
        self.budgets = budgets
        if gpu_query is None and any(d.startswith("gpu:") for d in budgets):
            gpu_query = sizing.query
        self.gpu_query = gpu_query
        self.gpu_free_wait = sizing.GPU_FREE_WAIT
        self.last_gpu_stop = float("-inf")  # when an engine on a GPU last stopped
        self.slots: dict[str, Slot] = {m.name: Slot(m, needs[m.name]) for m in models}
        self.starter = starter
        self.metrics = metrics
        self.changed = asyncio.Event()
        self.start_queue: list[Slot] = []
        self.closing = False
        self._tasks: set[asyncio.Task] = set()
        self.removed: set[str] = set()  # dropped by a reload, stopping once idle

    # -- the one place state changes --------------------------------------------------------
    def _to(self, slot: Slot, state: str, why: str = "") -> None:
        if slot.state != state:
            log.info("%s: %s -> %s%s", slot.name, slot.state, state, f" ({why})" if why else "")
        slot.state = state
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def _wait_change(self, timeout: float | None) -> None:
        ev = self.changed
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # -- requests ---------------------------------------------------------------------------
    async def lease(self, name: str) -> Lease:
        """Wait until `name` is ready and has a free slot; bounded by its queue_timeout."""
        slot = self.slots[name]
        pol = slot.policy
        if self.closing:
            raise ShuttingDown("the gateway is shutting down")
        if slot.queued >= pol.max_queue and not (
            slot.state == READY and slot.in_flight < pol.max_concurrency and not slot.waiters
        ):
            raise QueueFull(
                f"{slot.queued} requests already wait for '{name}' (max_queue {pol.max_queue})",
                retry_after=1,
            )
        deadline = time.monotonic() + pol.queue_timeout
        slot.queued += 1
        self._metric("queue", name, slot.queued)
        t0 = time.monotonic()
        try:
            while True:
                if self.closing:
                    raise ShuttingDown("the gateway is shutting down")
                if slot.state == READY and not slot.draining:
                    if slot.in_flight < pol.max_concurrency and not slot.waiters:
                        break
                    fut = asyncio.get_running_loop().create_future()
                    slot.waiters.append(fut)
                    try:
                        await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        raise self._timeout(slot) from None
                    finally:
                        if fut in slot.waiters:
                            slot.waiters.remove(fut)
                    if slot.state == READY and slot.in_flight < pol.max_concurrency:
                        break
                    continue
                if slot.state == FAILED and time.monotonic() < slot.retry_at:
                    raise self._failed(slot)
                if slot.state in (STOPPED, FAILED) and slot.start_task is None:
                    slot.start_task = self._spawn(self._start(slot))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timeout(slot)
                if slot.start_task is not None:
                    done, _ = await asyncio.wait({slot.start_task}, timeout=remaining)
                    if not done:
                        raise self._timeout(slot)
                    if slot.state == FAILED:
                        raise self._failed(slot)
                else:
                    await self._wait_change(min(remaining, 0.5))
        finally:
            slot.queued -= 1
            self._metric("queue", name, slot.queued)
            self._metric("wait", name, time.monotonic() - t0)
        slot.in_flight += 1
        slot.last_used = time.monotonic()
        self._metric("in_flight", name, slot.in_flight)
        return Lease(self, slot)

    def _release(self, slot: Slot) -> None:
        slot.in_flight -= 1
        slot.last_used = time.monotonic()
        self._metric("in_flight", slot.name, slot.in_flight)
        while slot.waiters and slot.in_flight < slot.policy.max_concurrency:
            fut = slot.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break
        self._notify()

    def _timeout(self, slot: Slot) -> QueueTimeout:
        phase = slot.phase or slot.state
        return QueueTimeout(
            f"'{slot.name}' was not ready within queue_timeout "
            f"({slot.policy.queue_timeout:g} s); it is {slot.state}"
            + (f" ({phase})" if phase != slot.state else ""),
            retry_after=max(1.0, min(30.0, slot.policy.queue_timeout)),
        )

    def _failed(self, slot: Slot) -> StartFailed:
        err = slot.error
        msg = getattr(err, "message", None) or str(err) or type(err).__name__
        hint = getattr(err, "hint", None) or ""
        wait = max(0.0, slot.retry_at - time.monotonic())
        if isinstance(err, GatewayError):
            return type(err)(err.message, retry_after=wait or err.retry_after, hint=err.hint)
        return StartFailed(
            f"'{slot.name}' failed to start: {msg}", retry_after=max(1.0, wait), hint=hint
        )

    # -- starting ---------------------------------------------------------------------------
    async def _start(self, slot: Slot) -> None:
        """The one start of `slot`: take its turn in the start queue, make room, start."""
        t0 = time.monotonic()
        self.start_queue.append(slot)
        try:
            self._to(slot, STARTING, "requested")
            slot.phase = "queued"
            while True:
                if self.closing:
                    raise ShuttingDown("the gateway is shutting down")
                if slot.queued == 0 and not slot.model.preload:
                    raise _Unwanted()
                if self.start_queue[0] is slot:
                    others = [s.resident() for s in self.slots.values() if self._holds(s, slot)]
                    d = fit.decide(self.budgets, others, slot.need, time.monotonic())
                    if d.kind == fit.START:
                        break
                    if d.kind == fit.NEVER:
                        raise NeverFits(f"'{slot.name}' cannot fit: {d.reason}")
                    if d.kind == fit.EVICT:
                        for v in d.victims:
                            self._stop(self.slots[v], "evicted for " + slot.name)
                    slot.phase = "waiting for memory"
                await self._wait_change(0.25)
            self.start_queue.remove(slot)
            self._notify()
            gpus = await self._gpus_for(slot)
            slot.phase = "spawning"
            await self._make(slot, gpus)
            await slot.handle.wait_ready()
        except _Unwanted:
            self.start_queue.remove(slot)
            slot.phase = ""
            self._to(slot, STOPPED, "no request waits for it any more")
        except BaseException as e:
            if slot in self.start_queue:
                self.start_queue.remove(slot)
            if slot.handle is not None:
                with contextlib.suppress(Exception):
                    await slot.handle.stop()
                slot.handle = None
            if isinstance(e, asyncio.CancelledError):  # the gateway is closing
                slot.phase = ""
                self._to(slot, STOPPED, "start cancelled")
                raise
            slot.failures += 1
            pol = slot.model.profile.restart
            delay = min(pol.backoff_max, pol.backoff_initial * 2 ** (slot.failures - 1))
            slot.retry_at = time.monotonic() + delay
            slot.error = e
            slot.phase = ""
            self._metric("start", slot.name, time.monotonic() - t0, ok=False)
            self._to(slot, FAILED, f"{e}; retry after {delay:g} s")
        else:
            slot.failures, slot.error, slot.phase = 0, None, ""
            slot.loaded_at = slot.last_used = time.monotonic()
            self._metric("start", slot.name, time.monotonic() - t0, ok=True)
            self._to(slot, READY, f"in {time.monotonic() - t0:.2f} s")
        finally:
            slot.start_task = None

    async def _make(self, slot: Slot, gpus: list) -> None:
        """Call the starter in a worker thread (the real one renders the profile and, on a
        GPU, reads the model's files: not on the loop). The handle it returns becomes the
        slot's even when the start is cancelled meanwhile, so the cancel path stops it."""
        sizes = getattr(self.starter, "sizes", False)
        args = (slot.model, slot.need, gpus) if sizes else (slot.model,)
        made = asyncio.get_running_loop().run_in_executor(None, self.starter, *args)
        try:
            slot.handle = await asyncio.shield(made)
        except asyncio.CancelledError:
            while not made.done():  # a thread cannot be cancelled: wait for what it makes
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({made})
            if not made.cancelled() and made.exception() is None:
                slot.handle = made.result()
            raise

    async def _gpus_for(self, slot: Slot) -> list:
        """The GPUs as they are now, for a start that needs GPU memory. After a stop, wait
        (bounded by gpu_free_wait) until they report the memory the start needs as free."""
        if self.gpu_query is None or not sizing.gpu_needs(slot.need):
            return []
        recent = time.monotonic() - self.last_gpu_stop < self.gpu_free_wait
        wait = self.gpu_free_wait if recent else 0.0
        slot.phase = "waiting for GPU memory"
        loop = asyncio.get_running_loop()
        gpus, missing = await loop.run_in_executor(
            None, sizing.wait_free, slot.need, wait, self.gpu_query, lambda: self.closing
        )
        for i, (free, want) in missing.items():
            log.info(
                "%s: gpu:%d has %.2f GiB free of the %.2f GiB it needs%s",
                slot.name,
                i,
                free / 2**30,
                want / 2**30,
                f" after {wait:g} s" if wait else "",
            )
        return gpus

    def _gone(self, slot: Slot) -> None:
        """An engine of `slot` stopped or died: a start on a GPU waits for its memory."""
        if sizing.gpu_needs(slot.need):
            self.last_gpu_stop = time.monotonic()

    def _holds(self, s: Slot, wanted: Slot) -> bool:
        """Does `s` hold memory now (the fit counts it)? A start holds it from the moment it
        leaves the start queue: its engine may be in the making or waiting for a GPU."""
        if s is wanted:
            return False
        return s.state in (READY, STOPPING) or (s.state == STARTING and s not in self.start_queue)

    # -- stopping ---------------------------------------------------------------------------
    def _stop(self, slot: Slot, why: str) -> asyncio.Task | None:
        if slot.state not in (READY, STARTING) or slot.stop_task is not None:
            return slot.stop_task
        slot.stop_task = self._spawn(self._do_stop(slot, why))
        return slot.stop_task

    async def _do_stop(self, slot: Slot, why: str) -> None:
        try:
            self._to(slot, STOPPING, why)
            self._metric("stop", slot.name, why)
            while slot.in_flight > 0:  # drain: the fit never picks a busy model, a reload may
                await self._wait_change(0.5)
            h, slot.handle = slot.handle, None
            if h is not None:
                await h.stop()  # returns once the engine's process group is gone
                self._gone(slot)
            for fut in list(slot.waiters):
                if not fut.done():
                    fut.set_result(None)  # they retry and start it again if still wanted
        finally:
            slot.stop_task = None
            slot.draining = False
            if slot.name in self.removed:
                self.removed.discard(slot.name)
                self.slots.pop(slot.name, None)
            self._to(slot, STOPPED, why)

    async def unload(self, name: str, why: str = "unloaded") -> None:
        task = self._stop(self.slots[name], why)
        if task is not None:
            await task

    async def suspect(self, name: str, handle) -> None:
        """A request could not reach this engine: give its supervisor a moment to see the
        exit, and mark the model stopped if it did (the next request starts it again)."""
        slot = self.slots.get(name)
        deadline = time.monotonic() + 2.0
        while slot is not None and slot.handle is handle and time.monotonic() < deadline:
            if not handle.alive():
                self._crashed(slot)
                return
            await asyncio.sleep(0.02)

    def _crashed(self, s: Slot) -> None:
        s.error = StartFailed(f"the engine of '{s.name}' exited")
        s.handle = None
        self._gone(s)
        self._metric("stop", s.name, "crashed")
        self._to(s, STOPPED, "the engine exited")

    # -- background: ttl, crashes -----------------------------------------------------------
    async def run(self) -> None:
        """Housekeeping until closed: ttl unloads, engines that died, preloads."""
        for s in self.slots.values():
            if s.model.preload and s.start_task is None and s.state == STOPPED:
                s.start_task = self._spawn(self._start(s))
        while not self.closing:
            now = time.monotonic()
            due = CRASH_CHECK_S  # an engine that died is seen within this (or by a request)
            for s in list(self.slots.values()):
                if s.state == READY and s.handle is not None and not s.handle.alive():
                    self._crashed(s)
                    continue
                ttl = s.policy.ttl
                if s.state != READY or s.in_flight:
                    continue
                if s.draining or (not s.model.pin and ttl > 0 and now - s.last_used >= ttl):
                    self._stop(s, "removed" if s.draining else "ttl")
                elif not s.model.pin and ttl > 0:
                    due = min(due, s.last_used + ttl - now)
            # wakes at the next ttl, on any change (a release, a reload), else once a second
            await self._wait_change(max(0.01, due))

    async def close(self, grace: float) -> None:
        """Stop accepting; let in-flight requests finish up to `grace`; stop every engine."""
        self.closing = True
        self._notify()
        deadline = time.monotonic() + grace
        while any(s.in_flight for s in self.slots.values()) and time.monotonic() < deadline:
            await self._wait_change(0.1)
        for s in self.slots.values():
            if s.start_task is not None:
                s.start_task.cancel()
        await asyncio.gather(
            *(t for t in list(self._tasks) if t is not asyncio.current_task()),
            return_exceptions=True,
        )
        for s in self.slots.values():
            s.in_flight = 0
            if s.handle is not None:
                h, s.handle = s.handle, None
                with contextlib.suppress(Exception):
                    await h.stop()
            s.state = STOPPED

    # -- reload -----------------------------------------------------------------------------
    def apply(self, models, needs: dict) -> dict:
        """A reloaded gateway: add new models, drain removed ones, restart changed ones
        when idle. Returns what changed."""
        new = {m.name: m for m in models}
        added = [n for n in new if n not in self.slots]
        removed = [n for n in self.slots if n not in new]
        changed = []
        for n in added:
            self.slots[n] = Slot(new[n], needs[n])
        for n in removed:
            self.slots[n].draining = True
            self.removed.add(n)
            if self.slots[n].state in (STOPPED, FAILED):
                del self.slots[n]
                self.removed.discard(n)
        for n, m in new.items():
            s = self.slots[n]
            if n in added:
                continue
            if _fingerprint(s.model) != _fingerprint(m):
                changed.append(n)
                s.draining = s.state == READY  # stop once idle; the next request starts anew
            s.model, s.need = m, needs[n]
        self._notify()
        return {"added": added, "removed": removed, "changed": changed}

    # -- views ------------------------------------------------------------------------------
    def snapshot(self) -> list[dict]:
        now = time.monotonic()
        out = []
        for s in self.slots.values():
            d = {
                "name": s.name,
                "state": s.state,
                "in_flight": s.in_flight,
                "queued": s.queued,
                "need": s.need,
                "pin": s.model.pin,
            }
            if s.state == READY:
                d["idle_s"] = round(now - s.last_used, 1)
                d["base_url"] = s.handle.base_url if s.handle is not None else None
            if s.phase:
                d["phase"] = s.phase
            if s.error is not None and s.state == FAILED:
                d["error"] = getattr(s.error, "message", None) or str(s.error)
            out.append(d)
        return out

    def _metric(self, kind: str, name: str, value, **kw) -> None:
        if self.metrics is not None:
            self.metrics.observe(kind, name, value, **kw)


def _fingerprint(model) -> tuple:
    return (
        str(model.profile_path),
        model.profile.model_dump_json(),
        model.need_override,
    )
