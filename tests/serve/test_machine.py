"""The supervision state machine and its driver, through the Ops seam: no process forked."""

from __future__ import annotations

import pytest

from llmdeploy_cli.errors import NotReadyError
from llmdeploy_cli.supervise.machine import (
    EngineExited,
    InvalidTransition,
    Machine,
    Policy,
    Runner,
    Stopped,
    backoff_delay,
)
from llmdeploy_cli.supervise.state import (
    BACKOFF,
    FAILED,
    READY,
    STARTING,
    STOPPED,
    STOPPING,
)


def test_backoff_is_capped_exponential():
    assert [backoff_delay(n, 1.0, 30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(1, 0.5, 0.7) == 0.5
    assert backoff_delay(3, 0.5, 0.7) == 0.7


def test_transitions_are_checked():
    m = Machine(Policy())
    with pytest.raises(InvalidTransition):
        m.ready()  # STOPPED -> READY skips STARTING
    m.start()
    m.ready()
    with pytest.raises(InvalidTransition):
        m.start()  # READY -> STARTING without a stop or failure
    m.stopping()
    m.stopped()
    assert m.phase == STOPPED


def test_first_start_never_restarts():
    m = Machine(Policy("on-failure", max_restarts=5))
    m.start()
    assert m.failed() is None
    assert m.phase == FAILED


def test_policy_no_fails_after_ready():
    m = Machine(Policy("no"))
    m.start()
    m.ready()
    assert m.failed() is None and m.phase == FAILED


def test_on_failure_counts_and_resets_once_ready():
    m = Machine(Policy("on-failure", max_restarts=2, backoff_initial=1, backoff_max=3))
    m.start()
    m.ready()
    assert m.failed() == 1 and m.phase == BACKOFF
    m.start()
    assert m.failed() == 2  # a restarted engine that did not get ready
    m.start()
    m.ready()  # ready again: consecutive failures reset, total restarts kept
    assert (m.failures, m.restarts) == (0, 2)
    assert m.failed() == 1
    m.start()
    assert m.failed() == 2
    m.start()
    assert m.failed() is None and m.phase == FAILED
    assert m.restarts == 4


class FakeChild:
    def __init__(self, n):
        self.n = n
        self.stopped = False


class FakeOps:
    """Scripted outcomes: each start is ("ready", exit_rc | None) or an exception to raise
    while getting ready. exit None means 'stop requested while ready'."""

    def __init__(self, script, stop_in_sleep=False):
        self.script = list(script)
        self.children = []
        self.phases = []
        self.sleeps = []
        self.stop_in_sleep = stop_in_sleep
        self.first_flags = []

    def spawn(self):
        c = FakeChild(len(self.children))
        self.children.append(c)
        self.current = self.script.pop(0)
        return c

    def wait_ready(self, child, first):
        self.first_flags.append(first)
        if isinstance(self.current, BaseException):
            raise self.current

    def wait_exit(self, child):
        return self.current[1]

    def stop_child(self, child):
        child.stopped = True

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        return not self.stop_in_sleep

    def phase(self, machine, detail):
        self.phases.append(machine.phase)


def test_runner_stop_while_ready():
    ops = FakeOps([("ready", None)])
    Runner(ops, Policy()).run()
    assert ops.phases == [STARTING, READY, STOPPING, STOPPED]
    assert ops.children[0].stopped


def test_runner_stop_while_loading():
    ops = FakeOps([Stopped()])
    Runner(ops, Policy()).run()
    assert ops.phases == [STARTING, STOPPING, STOPPED]
    assert ops.children[0].stopped


def test_runner_crash_while_loading_fails_at_once():
    ops = FakeOps([EngineExited(1, "boom")])
    r = Runner(ops, Policy("on-failure", max_restarts=3))
    with pytest.raises(EngineExited):
        r.run()
    assert ops.phases == [STARTING, FAILED]
    assert ops.children[0].stopped  # the group is taken down even when the leader died
    assert ops.sleeps == []


def test_runner_restarts_with_backoff_then_gives_up():
    script = [
        ("ready", 1),  # ready, then crashes
        NotReadyError("slow"),  # restart 1 never gets ready
        EngineExited(137, "killed"),  # restart 2 dies while loading
        ("ready", 1),  # restart 3 ready (resets), then crashes
        ("ready", None),  # restart 4 ready, stopped by the user
    ]
    ops = FakeOps(script)
    r = Runner(ops, Policy("on-failure", max_restarts=3, backoff_initial=0.5, backoff_max=1.5))
    r.run()
    assert ops.sleeps == [0.5, 1.0, 1.5, 0.5]
    assert ops.first_flags == [True, False, False, False, False]
    assert r.machine.restarts == 4
    assert ops.phases[-2:] == [STOPPING, STOPPED]
    assert all(c.stopped for c in ops.children)


def test_runner_max_restarts_used_up():
    ops = FakeOps([("ready", 3)])
    r = Runner(ops, Policy("on-failure", max_restarts=0))
    with pytest.raises(EngineExited) as e:
        r.run()
    assert e.value.returncode == 3
    # Restarts that fail in a row use the budget up; each ready would have reset it.
    ops = FakeOps([("ready", 1), EngineExited(1, "x"), EngineExited(1, "y")])
    r = Runner(ops, Policy("on-failure", max_restarts=2, backoff_initial=1, backoff_max=9))
    with pytest.raises(EngineExited):
        r.run()
    assert ops.sleeps == [1, 2]
    assert ops.phases[-1] == FAILED


def test_runner_stop_during_backoff():
    ops = FakeOps([("ready", 1)], stop_in_sleep=True)
    Runner(ops, Policy("on-failure")).run()
    assert ops.phases[-2:] == [BACKOFF, STOPPED]


def test_runner_error_in_ready_hook_stops_the_child():
    class Boom(Exception):
        pass

    class Ops(FakeOps):
        def phase(self, machine, detail):
            super().phase(machine, detail)
            if machine.phase == READY:
                raise Boom()

    ops = Ops([("ready", None)])
    with pytest.raises(Boom):
        Runner(ops, Policy()).run()
    assert ops.children[0].stopped
