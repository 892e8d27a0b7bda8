"""The fleet with a fake start/stop seam: lifecycle rules without processes."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from llmdeploy_cli.gateway.config import ModelPolicy
from llmdeploy_cli.gateway.fleet import (
    FAILED,
    READY,
    STOPPED,
    Fleet,
    NeverFits,
    QueueFull,
    QueueTimeout,
    StartFailed,
)

G = 1024**3


class FakeEngine:
    def __init__(self, log, name, delay, fail):
        self.log, self.name, self.delay, self.fail = log, name, delay, fail
        self.base_url, self.model, self.api_key = f"http://fake/{name}", name, None
        self.running = True
        log.append(("start", name))

    async def wait_ready(self):
        await asyncio.sleep(self.delay)
        if self.fail:
            self.running = False
            raise RuntimeError(f"{self.name} broke")

    def alive(self):
        return self.running

    async def stop(self):
        self.running = False
        self.log.append(("stop", self.name))


def model(name, pin=False, preload=False, **policy):
    pol = ModelPolicy.model_validate({"min_resident": 0, **policy})
    restart = SimpleNamespace(backoff_initial=0.2, backoff_max=1.0)
    return SimpleNamespace(
        name=name,
        pin=pin,
        preload=preload,
        evictable=True,
        policy=pol,
        profile=SimpleNamespace(restart=restart, model_dump_json=lambda: name),
        profile_path=name,
        need_override=None,
    )


def fleet(models, budget=10 * G, need=4 * G, delay=0.05, fail=()):
    log: list = []

    def starter(m):
        return FakeEngine(log, m.name, delay, m.name in fail)

    f = Fleet(models, {"host": budget}, {m.name: {"host": need} for m in models}, starter)
    return f, log


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def use(f, name, hold=0.0):
    lease = await f.lease(name)
    await asyncio.sleep(hold)
    lease.release()
    return lease.upstream.model


def test_sixteen_requests_during_one_cold_start_start_it_once():
    async def go():
        f, log = fleet([model("a")], delay=0.2)
        got = await asyncio.gather(*(use(f, "a") for _ in range(16)))
        assert got == ["a"] * 16 and log == [("start", "a")]
        assert f.slots["a"].state == READY

    run(go())


def test_eviction_of_the_least_recently_used_idle_model():
    async def go():
        f, log = fleet([model("a"), model("b"), model("c")], budget=9 * G)
        await use(f, "a")
        await use(f, "b")
        await use(f, "a")  # b is now least recently used
        await use(f, "c")
        assert ("stop", "b") in log and ("stop", "a") not in log
        assert f.slots["b"].state == STOPPED and f.slots["c"].state == READY

    run(go())


def test_a_busy_model_is_not_evicted_until_its_request_ends():
    async def go():
        f, log = fleet([model("a"), model("b")], budget=5 * G)
        long = asyncio.create_task(use(f, "a", hold=0.5))
        await asyncio.sleep(0.15)
        t0 = time.monotonic()
        await use(f, "b")
        assert time.monotonic() - t0 >= 0.3  # waited for a's request to end
        assert log.index(("stop", "a")) > 0 and long.done()

    run(go())


def test_min_resident_delays_eviction():
    async def go():
        f, log = fleet([model("a", min_resident=0.6), model("b", min_resident=0.6)], budget=5 * G)
        await use(f, "a")
        t0 = time.monotonic()
        await use(f, "b")
        assert time.monotonic() - t0 >= 0.5

    run(go())


def test_queue_timeout_is_503_with_retry_after():
    async def go():
        f, _ = fleet([model("a", queue_timeout=0.1)], delay=1.0)
        with pytest.raises(QueueTimeout) as e:
            await use(f, "a")
        assert e.value.status == 503 and e.value.retry_after and "starting" in e.value.message

    run(go())


def test_max_queue_is_429():
    async def go():
        f, _ = fleet([model("a", max_queue=2)], delay=0.3)
        tasks = [asyncio.create_task(use(f, "a")) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as e:
            await use(f, "a")
        assert e.value.status == 429
        await asyncio.gather(*tasks)

    run(go())


def test_max_concurrency_queues_fifo():
    async def go():
        f, _ = fleet([model("a", max_concurrency=1)], delay=0.0)
        order = []

        async def one(i):
            lease = await f.lease("a")
            order.append(i)
            await asyncio.sleep(0.02)
            assert f.slots["a"].in_flight == 1
            lease.release()

        await use(f, "a")
        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
        assert order == list(range(5))

    run(go())


def test_a_failed_start_fails_every_waiter_then_backs_off_then_retries():
    async def go():
        f, log = fleet([model("a")], fail={"a"})
        res = await asyncio.gather(*(use(f, "a") for _ in range(4)), return_exceptions=True)
        assert all(isinstance(r, StartFailed) and "a broke" in r.message for r in res)
        assert log.count(("start", "a")) == 1 and f.slots["a"].state == FAILED
        with pytest.raises(StartFailed) as e:  # within the backoff: no new start
            await use(f, "a")
        assert e.value.retry_after and log.count(("start", "a")) == 1
        await asyncio.sleep(0.25)
        with pytest.raises(StartFailed):
            await use(f, "a")
        assert log.count(("start", "a")) == 2

    run(go())


def test_never_fits():
    async def go():
        f, _ = fleet([model("a")], budget=2 * G)
        with pytest.raises(NeverFits):
            await use(f, "a")

    run(go())


def test_ttl_unload_and_pin():
    async def go():
        f, log = fleet([model("a", ttl=0.2), model("b", ttl=0.2, pin=True)], budget=20 * G)
        bg = asyncio.create_task(f.run())
        await use(f, "a")
        await use(f, "b")
        await asyncio.sleep(0.6)
        assert f.slots["a"].state == STOPPED and f.slots["b"].state == READY
        await f.close(1)
        bg.cancel()
        assert ("stop", "b") in log

    run(go())


def test_a_dead_engine_is_restarted_by_the_next_request():
    async def go():
        f, log = fleet([model("a")])
        bg = asyncio.create_task(f.run())
        await use(f, "a")
        f.slots["a"].handle.running = False
        await asyncio.sleep(0.4)
        assert f.slots["a"].state == STOPPED
        await use(f, "a")
        assert log.count(("start", "a")) == 2
        await f.close(1)
        bg.cancel()

    run(go())


def test_close_drains_in_flight_requests():
    async def go():
        f, log = fleet([model("a")])
        req = asyncio.create_task(use(f, "a", hold=0.3))
        await asyncio.sleep(0.1)
        await f.close(2)
        assert req.done() and not req.exception()
        assert log[-1] == ("stop", "a")

    run(go())


def test_reload_adds_removes_and_restarts_changed():
    async def go():
        f, log = fleet([model("a"), model("b")], budget=20 * G)
        bg = asyncio.create_task(f.run())
        await use(f, "a")
        await use(f, "b")
        changed_b = model("b")
        changed_b.profile.model_dump_json = lambda: "b2"
        diff = f.apply([changed_b, model("c")], {"b": {"host": G}, "c": {"host": G}})
        assert diff == {"added": ["c"], "removed": ["a"], "changed": ["b"]}
        await asyncio.sleep(0.5)
        assert "a" not in f.slots and f.slots["b"].state == STOPPED
        await use(f, "b")
        await use(f, "c")
        assert log.count(("start", "b")) == 2
        await f.close(1)
        bg.cancel()

    run(go())


def test_a_changed_pinned_model_restarts_on_reload():
    async def go():
        f, log = fleet([model("p", pin=True)])
        bg = asyncio.create_task(f.run())
        await use(f, "p")
        changed = model("p", pin=True)
        changed.profile.model_dump_json = lambda: "p2"
        assert f.apply([changed], {"p": {"host": G}})["changed"] == ["p"]
        await asyncio.sleep(0.5)
        assert ("stop", "p") in log
        await use(f, "p")
        assert log.count(("start", "p")) == 2
        await f.close(1)
        bg.cancel()

    run(go())


def test_an_engine_being_made_counts_in_the_fit():
    """The starter runs in a worker thread: the fit counts the model it makes meanwhile."""

    async def go():
        log: list = []

        def starter(m):
            time.sleep(0.2)
            return FakeEngine(log, m.name, 0.01, False)

        models = [model("a"), model("b")]
        f = Fleet(models, {"host": 10 * G}, {m.name: {"host": 6 * G} for m in models}, starter)
        await asyncio.gather(use(f, "a"), use(f, "b"))
        assert log == [("start", "a"), ("stop", "a"), ("start", "b")]
        await f.close(1)

    run(go())


def test_a_start_cancelled_while_its_engine_is_made_stops_that_engine():
    async def go():
        log: list = []
        making, go_on = threading.Event(), threading.Event()

        def starter(m):
            making.set()
            go_on.wait(5)
            return FakeEngine(log, m.name, 0.01, False)

        f = Fleet([model("a")], {"host": 10 * G}, {"a": {"host": G}}, starter)
        req = asyncio.create_task(use(f, "a"))
        await asyncio.get_running_loop().run_in_executor(None, making.wait, 5)
        closing = asyncio.create_task(f.close(0))
        await asyncio.sleep(0.1)
        assert not closing.done()  # it waits for the engine in the making
        go_on.set()
        await closing
        assert log == [("start", "a"), ("stop", "a")]
        assert f.slots["a"].state == STOPPED and f.slots["a"].handle is None
        await asyncio.gather(req, return_exceptions=True)

    run(go())
