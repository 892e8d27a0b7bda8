"""The seam between the fleet and a running engine: `start(model) -> Handle`.

The real one serves the profile with the same library call `llmctl serve` uses
(supervise/serve.py), in a thread of its own that stays alive as long as the engine runs
(the engine's parent-death signal is tied to it), with the gateway's overrides: host
127.0.0.1, a free port, no restart policy (the gateway restarts on the next request), no
smoke (the readiness ladder's completion rung is the check), a random API key where the
backend takes one. Tests swap in a fake with the same three methods.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import threading
from typing import Protocol

log = logging.getLogger("llmctl.gateway")

KEY_ENV = "LLMCTL_GATEWAY_ENGINE_KEY"
GROUP_GONE_WAIT = 30.0  # seconds stop() waits for the engine's process group to be gone
BIND_TRIES = 3  # ports tried when the one picked is taken before the engine binds it


class Handle(Protocol):
    base_url: str
    model: str
    api_key: str | None

    async def wait_ready(self) -> None: ...

    def alive(self) -> bool: ...

    async def stop(self) -> None: ...


def run_name(gateway: str, profile: str) -> str:
    """A gateway engine's run name, `GATEWAY/PROFILE` (status, logs, `stop`): distinct from
    a plain serve of the profile, which cannot hold a `/` (state.py maps it in file names)."""
    from llmdeploy_cli.supervise.state import SEP

    return f"{gateway}{SEP}{profile}"


class ServedEngine:
    """One model served by supervise.serve() in its own thread."""

    def __init__(self, model, gateway_name: str, environ: dict, on_event=None, need=None, gpus=()):
        from llmdeploy_cli.gateway import sizing
        from llmdeploy_cli.gateway.caps import takes_api_key

        # an engine that sizes itself is told the share the fit counts for it (sizing.py)
        self.sizing = sizing.start_overrides(model, need or {}, list(gpus))
        if self.sizing:
            log.info("%s: started with %s", model.name, self.sizing)
        p = sizing.apply(model.profile, self.sizing)
        env = dict(environ)
        key_env = p.server.api_key_env
        if key_env is None and takes_api_key(model.backend):
            # one variable per engine, in this process's environment too: the preflight
            # checks that the variable a profile names is set
            key_env = KEY_ENV + "_" + re.sub(r"[^A-Za-z0-9]", "_", p.name).upper()
            env[key_env] = os.environ[key_env] = "sk-gw-" + secrets.token_urlsafe(24)
        update = {
            "name": run_name(gateway_name, p.name),
            # only keys the profile or the gateway set: a backend refuses a set key it
            # cannot honour, even one set to None
            "server": p.server.model_copy(
                update={"host": "127.0.0.1", **({"api_key_env": key_env} if key_env else {})}
            ),
            "restart": p.restart.model_copy(update={"policy": "no"}),
        }
        if p.model.served_name is None and model.resolved.plan.endpoint.model == p.name:
            # the engine's name defaults to the profile's: keep it, not the run's name
            update["model"] = p.model.model_copy(update={"served_name": p.name})
        if not p.server.managed:
            update = {"name": update["name"]}
        profile = p.model_copy(update=update)
        profile._source, profile._path = p._source, p._path
        self.profile, self.environ = profile, env
        self.engine_version = model.resolved.plan.engine_version
        self.managed = p.server.managed
        self._resolve()
        self.profile_path = model.profile_path
        self.on_event = on_event
        from llmdeploy_cli.supervise.stopflag import StopFlag

        # a StopFlag, not an Event: the session sleeps on it and the engine's pidfd together
        self.stop_flag = StopFlag()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.pgid: int | None = None

    def _resolve(self) -> None:
        """Render the profile on a port free now (a managed engine) and note where it is."""
        from llmdeploy_cli.netutil import free_port
        from llmdeploy_cli.resolve import resolve_profile

        port = free_port() if self.managed else None
        self.resolved = resolve_profile(
            self.profile, self.environ, port=port, engine_version=self.engine_version
        )
        ep = self.resolved.plan.endpoint
        self.base_url, self.model = ep.base_url, ep.model
        self.api_key = ep.api_key(self.environ)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"engine {self.model}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from llmdeploy_cli.errors import LlmctlError
        from llmdeploy_cli.supervise.serve import FOREGROUND, serve

        def on_event(ev) -> None:
            if ev.kind == "ready":
                self._note_group()
                self._ready.set()
            if self.on_event is not None:
                self.on_event(ev)

        try:
            for attempt in range(BIND_TRIES):
                try:
                    serve(
                        self.resolved,
                        FOREGROUND,
                        on_event,
                        profile_path=self.profile_path,
                        stop=self.stop_flag,
                        smoke=False,
                        preflight=True,
                        environ=self.environ,
                    )
                    break
                except LlmctlError as e:
                    # someone took the port between picking it and binding it: another one
                    taken = "already in use" in f"{e.message} {e.hint or ''}"
                    if not (taken and self.managed and not self._ready.is_set()):
                        raise
                    if attempt == BIND_TRIES - 1:
                        raise
                    self._resolve()
        except BaseException as e:  # noqa: BLE001 - handed to the fleet
            self.error = e
        finally:
            self._ready.set()

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._ready.wait)
        if self.error is not None:
            raise self.error
        if not self.alive():
            from llmdeploy_cli.errors import LlmctlError

            raise LlmctlError("the engine stopped before it was ready")

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and self.error is None

    def _note_group(self) -> None:
        """The engine's process group, from its run's state (for stop to wait on)."""
        from llmdeploy_cli.supervise import state as st_mod

        st = st_mod.load(self.profile.name)
        if st is not None and st.pgid:
            self.pgid = st.pgid

    async def stop(self) -> None:
        """Stop the engine; return once its thread has ended and its process group is gone
        (bounded), so the next start finds the memory free."""
        self.stop_flag.set()
        loop = asyncio.get_running_loop()
        if self.thread is not None:
            await loop.run_in_executor(None, self.thread.join)
        if self.pgid:
            await loop.run_in_executor(None, wait_group_gone, self.pgid, GROUP_GONE_WAIT)


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of group `pgid` is left; False if some still are after
    `timeout` seconds."""
    import time

    from llmdeploy_cli.supervise.procgroup import group_members

    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def real_starter(gateway_name: str, environ: dict, on_event=None):
    """The fleet's start seam for real engines."""

    def start(model, need=None, gpus=()) -> ServedEngine:
        eng = ServedEngine(model, gateway_name, environ, on_event, need, gpus)
        eng.start()
        return eng

    start.sizes = True  # the fleet passes the model's need and the GPUs as they are now
    return start
