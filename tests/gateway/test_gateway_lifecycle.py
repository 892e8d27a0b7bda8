"""Lifecycle scenarios with real llama.cpp engines (the xllamacpp wheel on the CPU) behind
`llmctl gateway serve`, asserted on the process list while they happen.

The tiny model answers 200 tokens in a few tens of milliseconds, so a "long" request is
made from outside: its engine is paused (SIGSTOP) while the request is in flight, or
throttled (SIGSTOP/SIGCONT in turns, as cpulimit does) so that a stream is still under way
when its engine is killed. The engines are real; only their pace is set by the test."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import psutil
import pytest

from tests.gateway import test_gateway_e2e as e2e
from tests.gateway.test_gateway_e2e import MSG, wait_for

gateway = e2e.gateway  # the fixture: `llmctl gateway serve` on profiles of the tiny model

pytestmark = pytest.mark.slow

LONG = {"max_tokens": 200, "extra_body": {"ignore_eos": True}}


class Sampler:
    """Samples `fn()` every 20 ms in a thread until stopped; `.seen` keeps every value."""

    def __init__(self, fn):
        self.fn, self.seen, self._stop = fn, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.seen.append((time.monotonic(), self.fn()))
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(5)


class Throttle:
    """Lets process `pid` run `on` seconds in every `on + off` (SIGSTOP/SIGCONT)."""

    def __init__(self, pid: int, on: float = 0.001, off: float = 0.1):
        self.pid, self.on, self.off = pid, on, off
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            while not self._stop.is_set():
                os.kill(self.pid, signal.SIGSTOP)
                time.sleep(self.off)
                os.kill(self.pid, signal.SIGCONT)
                time.sleep(self.on)
        except ProcessLookupError:
            pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(5)
        if psutil.pid_exists(self.pid):
            os.kill(self.pid, signal.SIGCONT)


def test_sixteen_requests_during_one_cold_start_see_one_engine_process(gateway):
    g = gateway(["a"], "profiles: [profiles/a.yml]\n")
    assert g.engines() == []
    results, errors = [], []

    def one():
        try:
            results.append(g.chat("a").model)
        except Exception as e:  # noqa: BLE001 - collected and asserted on
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(16)]
    with Sampler(lambda: len(g.engines())) as s:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == [] and results == ["a"] * 16
    counts = [n for _, n in s.seen]
    assert max(counts) == 1 and counts.count(1) > 0  # seen during the start, never two
    metrics = httpx.get(g.url + "/metrics").text
    assert 'llmctl_gateway_starts_total{model="a",result="ok"} 1.0' in metrics


def test_min_resident_keeps_two_alternating_models_from_thrashing(gateway):
    g = gateway(
        ["a", "b"],
        """\
        profiles: ["profiles/*.yml"]
        defaults: {min_resident: 1.0}
        models: {a: {need: 1GiB}, b: {need: 1GiB}}
        memory: {host_ram: 1536MiB, gpus: []}
        """,
    )
    took = []
    with Sampler(lambda: (len(g.engine_of("a")), len(g.engine_of("b")))) as s:
        for name in ["a", "b", "a", "b"]:
            t0 = time.monotonic()
            assert g.chat(name).model == name
            took.append(time.monotonic() - t0)
    # each switch waited until the resident model had been resident for min_resident
    assert all(t >= 0.8 for t in took[1:]), took
    assert all(a + b <= 1 for _, (a, b) in s.seen)  # the victim was gone before the start
    metrics = httpx.get(g.url + "/metrics").text
    for name in "ab":
        assert f'llmctl_gateway_starts_total{{model="{name}",result="ok"}} 2.0' in metrics


def test_a_busy_model_is_not_evicted_until_its_long_stream_ends(gateway):
    g = gateway(
        ["a", "b"],
        """\
        profiles: ["profiles/*.yml"]
        defaults: {min_resident: 0}
        models: {a: {need: 1GiB}, b: {need: 1GiB}}
        memory: {host_ram: 1536MiB, gpus: []}
        """,
    )
    g.chat("a")
    (pid_a,) = g.engine_of("a")
    ended = {}

    def long_stream():
        n = 0
        stream = g.client.chat.completions.create(model="a", messages=MSG, stream=True, **LONG)
        for _ in stream:
            n += 1
        ended["a"] = (time.monotonic(), n)

    def then_b():
        assert g.chat("b").model == "b"
        ended["b"] = time.monotonic()

    with Sampler(lambda: (g.engine_of("a"), g.engine_of("b"))) as s:
        os.kill(pid_a, signal.SIGSTOP)  # a's engine holds the request until SIGCONT
        try:
            ta = threading.Thread(target=long_stream)
            ta.start()
            assert wait_for(lambda: _in_flight(g, "a") == 1)
            tb = threading.Thread(target=then_b)
            tb.start()
            assert wait_for(lambda: g.state("b") == "starting")  # b waits for memory
            time.sleep(0.5)
            assert "a" not in ended and _in_flight(g, "a") == 1
            assert g.engine_of("a") == [pid_a] and g.engine_of("b") == []  # a kept, b waits
        finally:
            os.kill(pid_a, signal.SIGCONT)
        ta.join(60)
        tb.join(60)
    t_a, chunks = ended["a"]
    assert chunks > 20 and ended["b"] > t_a
    b_up = [t for t, (_, b) in s.seen if b]
    a_up = [t for t, (a, _) in s.seen if a]
    assert b_up and min(b_up) > max(a_up)  # b started only after a's engine was gone
    assert max(a_up) >= t_a - 0.05  # and a's engine lived until its stream ended


def _in_flight(g, name) -> int:
    doc = httpx.get(g.url + "/v1/models").json()
    return next(m["llmctl"]["in_flight"] for m in doc["data"] if m["id"] == name)


def test_kill_9_of_an_engine_mid_stream_ends_it_with_an_error_event_then_restarts(gateway):
    g = gateway(["a"], "profiles: [profiles/a.yml]\n")
    body = {"model": "a", "messages": MSG, "stream": True, "max_tokens": 200, "ignore_eos": True}
    for _attempt in range(3):  # again if the throttled engine still finished before the kill
        assert g.chat("a").model == "a"  # the next request starts it (again)
        (pid,) = g.engine_of("a")
        data = b""
        with (
            Throttle(pid),
            httpx.stream("POST", g.url + "/v1/chat/completions", json=body, timeout=60) as r,
        ):
            assert r.status_code == 200
            it = r.iter_raw()
            while b'"content":"' not in data:  # the stream is under way: text has come
                data += next(it)
            os.kill(pid, signal.SIGKILL)
            try:
                for chunk in it:
                    data += chunk
            except httpx.HTTPError:
                pass  # the gateway closes the connection after the error event
        assert wait_for(lambda: g.state("a") == "stopped" and g.engine_of("a") == [])
        if b"[DONE]" not in data:
            break
    assert b"event: error" in data and b"[DONE]" not in data
    err = data.split(b"event: error\ndata: ")[1].split(b"\n")[0]
    assert b"engine" in err
    assert g.chat("a").model == "a"  # the next request starts it again
    (new,) = g.engine_of("a")
    assert new != pid
