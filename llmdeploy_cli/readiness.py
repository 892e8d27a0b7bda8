"""Staged readiness: is the endpoint really serving?

    alive -> port accepting -> health (backend.probe) -> [after-ready steps]
          -> model listed under its exact name -> one real completion
             (profile.health.require_completion)

- every poll first checks the engine is still alive: a crash while loading fails at once;
- while the port refuses, connection attempts back off (5 ms doubling to 20 ms: a refused
  connect costs microseconds); once it accepts, the later rungs poll every 20 ms, so
  detection adds little to the engine's own start time;
- each phase has its own deadline (profile.health.*_timeout, else the backend's defaults).
  With health.extend_on_progress a deadline that has passed is extended while the engine's
  log keeps moving: the phase fails once the log has been quiet for QUIET_S (or the whole
  timeout, if shorter) past its deadline, and never later than 3x its timeout. So a slow
  first start (compile, CUDA graphs, a download) is not killed while a hung one is.
- an overall `timeout` (serve --timeout) caps the whole ladder.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmdeploy_cli.errors import LlmctlError, NotReadyError

# The probes' parsing and failure vocabulary (used by Backend.probe / model_listed and
# below), imported with this module: a first import inside the health rung would land in
# the readiness detection delay (about 10 ms here).
from llmdeploy_cli.openai_http import failures as _failures  # noqa: F401
from llmdeploy_cli.openai_http import wire as _wire  # noqa: F401
from llmdeploy_cli.openai_http.clients import sync_client

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from llmdeploy_cli.backend import Backend, Endpoint
    from llmdeploy_cli.profile import Profile

POLL_S = 0.02  # once the port accepts
REFUSED_BACKOFF = (0.005, 0.02)  # first and largest delay while the port refuses
QUIET_S = 30.0
HARD_FACTOR = 3.0
PHASES = ("port", "health", "model", "completion")


class Crashed(LlmctlError):
    """The engine exited while readiness was waiting for it."""

    def __init__(self, returncode: int | None, phase: str):
        from llmdeploy_cli.supervise.procgroup import how_it_ended

        super().__init__(f"the engine {how_it_ended(returncode)} while {_doing(phase)}")
        self.returncode = returncode
        self.phase = phase


class Interrupted(Exception):
    """A stop was requested while waiting."""


def _doing(phase: str) -> str:
    return {
        "port": "starting (before its port opened)",
        "health": "loading (port open, health not yet ok)",
        "model": "loading (model not yet listed)",
        "completion": "answering its first completion",
    }.get(phase, "loading")


@dataclass
class Deadlines:
    port: float
    load: float
    completion: float

    @classmethod
    def for_profile(cls, backend: Backend, profile: Profile) -> Deadlines:
        h = profile.health
        start, load, comp = backend.timeouts
        return cls(h.start_timeout or start, h.load_timeout or load, h.completion_timeout or comp)


@dataclass
class Result:
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    total_s: float = 0.0
    skipped: list[str] = field(default_factory=list)
    completion: dict | None = None

    def as_dict(self) -> dict:
        return {
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "total_s": round(self.total_s, 4),
            "skipped": self.skipped,
        }


class _Clock:
    """One phase's deadline, extended while the log moves."""

    def __init__(self, phase, timeout, extend, activity, overall_deadline):
        self.phase = phase
        self.timeout = timeout
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout
        self.hard = self.t0 + timeout * HARD_FACTOR
        self.extend = extend
        self.activity = activity
        self.overall = overall_deadline
        self.quiet = min(QUIET_S, timeout)

    def expired(self) -> str | None:
        now = time.monotonic()
        if self.overall is not None and now >= self.overall:
            return "overall"
        if now < self.deadline:
            return None
        if self.extend and self.activity is not None and now < self.hard:
            last = self.activity()
            if last is not None and now - last < self.quiet:
                return None
        return "phase"


def _accepting(host: str, port: int, timeout: float = 0.5) -> bool | None:
    """True: accepted. False: refused (or not routable yet). None: timed out."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return False
    except TimeoutError:
        return None
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
            return False
        return False


def wait_ready(
    backend: Backend,
    endpoint: Endpoint,
    profile: Profile,
    *,
    alive: Callable[[], int | None] | None = None,
    activity: Callable[[], float | None] | None = None,
    stop: Callable[[], bool] | None = None,
    on_phase: Callable[[str], None] | None = None,
    timeout: float | None = None,
    deadlines: Deadlines | None = None,
    client: httpx.Client | None = None,
    after_health: Callable[[], None] | None = None,
) -> Result:
    """Walk the ladder. `alive()` returns the engine's exit status once it has exited (None
    while it runs); `activity()` the monotonic time of its last log output; `stop()` is
    true once the caller wants to give up. `after_health()` runs once the health rung
    passes (the backend's after-ready steps: a model must be pulled, created or launched
    before it can be listed). Raises Crashed, NotReadyError, Interrupted."""

    dl = deadlines or Deadlines.for_profile(backend, profile)
    extend = profile.health.extend_on_progress
    t_start = time.monotonic()
    overall = t_start + timeout if timeout else None
    res = Result()
    phase_state: dict[str, Any] = {}

    def check(phase: str, clock: _Clock) -> None:
        if stop is not None and stop():
            raise Interrupted()
        if alive is not None:
            rc = alive()
            if rc is not None:
                raise Crashed(rc, phase)
        why = clock.expired()
        if why is not None:
            raise _not_ready(phase, clock, why, timeout, phase_state.get("why"))

    def enter(phase: str) -> float:
        if on_phase is not None:
            on_phase(phase)
        return time.monotonic()

    own_client = client is None
    if client is None:
        client = sync_client(
            endpoint.base_url,
            api_key=endpoint.api_key(),
            timeout=5.0,
            connect=1.0,
            max_connections=4,
            keepalive=2,
        )
    try:
        # 1-2. alive, port accepting (back off while refused)
        url = urlsplit(endpoint.health_url or endpoint.base_url)
        host = (url.hostname or "127.0.0.1").strip("[]")
        port = url.port or (443 if url.scheme == "https" else 80)
        t = enter("port")
        clock = _Clock("port", dl.port, extend, activity, overall)
        delay = REFUSED_BACKOFF[0]
        while True:
            check("port", clock)
            ok = _accepting(host, port)
            if ok:
                break
            if ok is False:
                time.sleep(delay)
                delay = min(delay * 2, REFUSED_BACKOFF[1])
        res.timings["port"] = time.monotonic() - t

        # 3. health, and 4. the model listed under its exact name: one load deadline
        t = enter("health")
        clock = _Clock("health", dl.load, extend, activity, overall)
        while True:
            check("health", clock)
            p = backend.probe(client, endpoint)
            phase_state["why"] = p.why
            if p.state.value == "ready":
                break
            time.sleep(POLL_S)
        res.timings["health"] = time.monotonic() - t
        if after_health is not None:
            t = enter("after_ready")
            after_health()
            res.timings["after_ready"] = time.monotonic() - t
            clock = _Clock("model", dl.load, extend, activity, overall)
        if backend.lists_models:
            t = enter("model")
            clock.phase = "model"
            while True:
                check("model", clock)
                p = backend.model_listed(client, endpoint)
                phase_state["why"] = p.why
                if p.state.value == "ready":
                    break
                time.sleep(POLL_S)
            res.timings["model"] = time.monotonic() - t
        else:
            res.skipped.append("model")

        # 5. one real completion
        if profile.health.require_completion and endpoint.task in ("chat", "embedding"):
            t = enter("completion")
            clock = _Clock("completion", dl.completion, extend, activity, overall)
            while True:
                check("completion", clock)
                ok, why, doc = _one_request(client, endpoint, dl.completion)
                phase_state["why"] = why
                if ok:
                    res.completion = doc
                    break
                time.sleep(POLL_S)
            res.timings["completion"] = time.monotonic() - t
        else:
            res.skipped.append("completion")
    finally:
        if own_client:
            client.close()
    res.total_s = time.monotonic() - t_start
    return res


def _one_request(client, endpoint: Endpoint, timeout: float) -> tuple[bool, str, dict | None]:
    import httpx

    from llmdeploy_cli.openai_http.failures import TIMEOUT, classify
    from llmdeploy_cli.openai_http.wire import body_error_text

    if endpoint.task == "embedding":
        path, body = "/embeddings", {"model": endpoint.model, "input": "ready?"}
    else:
        path = "/chat/completions"
        body = {
            "model": endpoint.model,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 1,
            "temperature": 0,
            "stream": False,
        }
    try:
        r = client.post(endpoint.base_url + path, json=body, timeout=timeout)
    except httpx.TransportError as e:
        f = classify(e)
        if f.kind == TIMEOUT:
            return False, f"POST {path} timed out", None
        return False, f"POST {path}: {f.kind}", None
    if r.status_code != 200:
        said = body_error_text(r.content, r.status_code, 200)
        return False, f"POST {path} answered {r.status_code}: {said}", None
    try:
        doc = r.json()
    except ValueError:
        return False, f"POST {path} did not answer JSON", None
    if endpoint.task == "embedding":
        ok = bool(doc.get("data"))
    else:
        ok = bool(doc.get("choices"))
    return ok, "answered" if ok else f"POST {path} answered without results", doc


def _not_ready(phase, clock: _Clock, why: str, timeout, last: str | None) -> NotReadyError:
    if why == "overall":
        msg = f"not ready within --timeout {timeout:g} s (still {_doing(phase)})"
        hint = "raise --timeout, or look at the log lines above"
    else:
        key = {"port": "start_timeout", "completion": "completion_timeout"}.get(
            phase, "load_timeout"
        )
        msg = f"not ready: {phase} phase took longer than {clock.timeout:g} s ({_doing(phase)})"
        hint = f"raise health.{key} in the profile if the engine is just slow"
    if last:
        msg += f"; last answer: {last}"
    return NotReadyError(msg, hint)
