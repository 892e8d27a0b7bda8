"""The supervision state machine and its driver (docs/design.md §5).

    STOPPED -> STARTING -> READY
    STARTING | READY -> STOPPING -> STOPPED
    STARTING | READY -> BACKOFF -> STARTING      (restart policy on-failure)
    STARTING | READY -> FAILED                   (policy no, or max_restarts used up)

`Machine` holds the phase and the restart arithmetic and nothing else. `Runner` drives it
through an `Ops` object, the one seam where the operating system is touched (spawn,
readiness, waiting, stopping, sleeping), so the whole loop runs in unit tests with a fake.

Policy: the first start of a run never restarts — a profile that cannot start fails at
once with the log tail and a diagnosis. Restarts apply to an engine that was ready once:
each unexpected exit (or a restarted engine that does not get ready) waits
min(backoff_initial * 2**(n-1), backoff_max) before start n; the count of consecutive
failures resets once the engine is ready again, and the run fails after max_restarts
consecutive failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from llmdeploy_cli.errors import LlmctlError
from llmdeploy_cli.supervise.state import BACKOFF, FAILED, READY, STARTING, STOPPED, STOPPING

ALLOWED = {
    STOPPED: {STARTING},
    STARTING: {READY, STOPPING, BACKOFF, FAILED},
    READY: {STOPPING, BACKOFF, FAILED},
    BACKOFF: {STARTING, STOPPING, STOPPED},
    STOPPING: {STOPPED},
    FAILED: {STARTING},
}


class InvalidTransition(RuntimeError):
    pass


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Delay before restart number `attempt` (1-based): capped exponential."""
    return min(cap, initial * (2 ** max(0, attempt - 1)))


@dataclass
class Policy:
    policy: str = "no"  # "no" | "on-failure"
    max_restarts: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 30.0

    @classmethod
    def from_spec(cls, spec) -> Policy:
        return cls(spec.policy, spec.max_restarts, spec.backoff_initial, spec.backoff_max)


class Machine:
    def __init__(self, policy: Policy):
        self.policy = policy
        self.phase = STOPPED
        self.restarts = 0  # restarts done in this run (never reset)
        self.failures = 0  # consecutive failures since the engine was last ready
        self.ever_ready = False

    def to(self, phase: str) -> None:
        if phase not in ALLOWED[self.phase]:
            raise InvalidTransition(f"{self.phase} -> {phase}")
        self.phase = phase

    def start(self) -> None:
        self.to(STARTING)

    def ready(self) -> None:
        self.to(READY)
        self.ever_ready = True
        self.failures = 0

    def failed(self) -> float | None:
        """The engine died or did not get ready. Returns the backoff delay, or None: FAILED."""
        if (
            self.policy.policy != "on-failure"
            or not self.ever_ready
            or self.failures >= self.policy.max_restarts
        ):
            self.to(FAILED)
            return None
        self.failures += 1
        self.restarts += 1
        self.to(BACKOFF)
        return backoff_delay(self.failures, self.policy.backoff_initial, self.policy.backoff_max)

    def restart_count(self) -> str:
        """How far the restart policy has got, for the log and `serve`: the budget is of
        consecutive failures (reset once the engine is ready again), `restarts` counts all."""
        return (
            f"{self.failures} of at most {self.policy.max_restarts} consecutive failures; "
            f"{self.restarts} restart(s) in this run"
        )

    def stopping(self) -> None:
        self.to(STOPPING)

    def stopped(self) -> None:
        if self.phase == BACKOFF:
            self.to(STOPPED)
            return
        if self.phase != STOPPING:
            self.to(STOPPING)
        self.to(STOPPED)


class Stopped(Exception):
    """A stop was requested while waiting (signal, `llmctl stop`)."""


class EngineExited(LlmctlError):
    """The engine exited on its own (while loading or after it was ready)."""

    def __init__(self, returncode: int | None, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.returncode = returncode


class Ops(Protocol):
    """Everything the Runner needs from the outside world."""

    def spawn(self) -> Any: ...

    def wait_ready(self, child: Any, first: bool) -> None:
        """Return once ready; raise EngineExited, NotReadyError (or any LlmctlError), Stopped."""

    def wait_exit(self, child: Any) -> int | None:
        """Block until the engine exits (its status) or a stop is requested (None)."""

    def stop_child(self, child: Any) -> None: ...

    def sleep(self, seconds: float) -> bool:
        """Sleep; False when a stop was requested meanwhile."""

    def phase(self, machine: Machine, detail: dict) -> None:
        """Called after every transition (write the state file, tell the user)."""


class Runner:
    """Drive a Machine through Ops until stopped (returns) or failed (raises)."""

    def __init__(self, ops: Ops, policy: Policy):
        self.ops = ops
        self.machine = Machine(policy)

    def _to(self, phase: str, **detail) -> None:
        if phase == STOPPED:
            self.machine.stopped()
        else:
            self.machine.to(phase)
        self.ops.phase(self.machine, detail)

    def run(self) -> None:
        m = self.machine
        while True:
            self._to(STARTING)
            child = self.ops.spawn()
            try:
                self.ops.wait_ready(child, not m.ever_ready)
            except Stopped:
                self._stop(child)
                return
            except LlmctlError as e:
                self.ops.stop_child(child)
                if not self._after_failure(e):
                    raise
                if not self.ops.sleep(self._delay):
                    self._to(STOPPED)
                    return
                continue
            except BaseException:
                self.ops.stop_child(child)
                raise
            m.ready()
            try:
                self.ops.phase(m, {})
                rc = self.ops.wait_exit(child)
            except BaseException:
                self.ops.stop_child(child)
                raise
            if rc is None:
                self._stop(child)
                return
            self.ops.stop_child(child)  # the leader is gone; take the rest of its group
            make = getattr(self.ops, "exit_error", None)  # optional: adds log tail, diagnosis
            err = (
                make(rc)
                if make is not None
                else EngineExited(rc, f"the engine exited with status {rc} after it was ready")
            )
            if not self._after_failure(err):
                raise err
            if not self.ops.sleep(self._delay):
                self._to(STOPPED)
                return

    def _after_failure(self, err: LlmctlError) -> bool:
        delay = self.machine.failed()
        self.ops.phase(self.machine, {"error": err, "delay": delay})
        if delay is None:
            return False
        self._delay = delay
        return True

    def _stop(self, child) -> None:
        self.machine.stopping()
        self.ops.phase(self.machine, {})
        self.ops.stop_child(child)
        self.machine.stopped()
        self.ops.phase(self.machine, {})
