"""Starting, stopping and talking to a gateway run from the CLI.

A gateway run is recorded like a serve run (`runs/NAME.json`, held by a lock), with the
gateway process as its supervisor: `llmctl status` lists it and `llmctl stop NAME` stops
it. Its control routes (reload, unload one model) are reached with the token in
`runs/NAME.gateway.json` (0600).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from llmdeploy_cli.errors import LlmctlError, PreflightError, UnreachableError
from llmdeploy_cli.gateway.config import Gateway


def _record(gw: Gateway, url: str):
    from llmdeploy_cli.supervise import state as st_mod
    from llmdeploy_cli.supervise.procgroup import start_time

    return st_mod.RunState(
        name=gw.name,
        backend="gateway",
        profile=str(gw.file),
        profile_hash=st_mod.profile_hash(gw.file),
        base_url=url + "/v1",
        model="*",
        port=gw.spec.listen.port,
        log=str(st_mod.log_path(gw.name)),
        phase=st_mod.READY,
        detached=False,
        supervisor_pid=os.getpid(),
        supervisor_started=start_time(os.getpid()),
        stop_signal=int(signal.SIGTERM),
        stop_grace_s=gw.spec.shutdown_grace + 20.0,
    )


def serve_foreground(gw: Gateway, on_event=None, environ: dict | None = None) -> int:
    """Run the gateway in this process until SIGINT/SIGTERM/SIGHUP; returns the exit code."""
    from llmdeploy_cli.gateway.server import run_gateway
    from llmdeploy_cli.openai_http.clients import run as run_loop
    from llmdeploy_cli.supervise import state as st_mod
    from llmdeploy_cli.supervise.stopflag import on_signals

    environ = dict(os.environ if environ is None else environ)
    lock = st_mod.RunLock(gw.name)
    if not lock.acquire():
        raise PreflightError(
            f"'{gw.name}' is already running", hint=f"stop it first: llmctl stop {gw.name}"
        )
    handler = logging.FileHandler(st_mod.log_path(gw.name))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("llmctl.gateway")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    emit = on_event or (lambda kind, msg: None)

    def events(kind: str, msg: str) -> None:
        logger.info("%s: %s", kind, msg)
        if kind == "listening":
            st_mod.save(_record(gw, msg))
        emit(kind, msg)

    try:
        with on_signals(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as stop:
            run_loop(run_gateway(gw, environ, stop, on_event=events))  # uvloop if there
            signum = getattr(stop, "signum", None)
        return 128 + int(signum) if signum else 0
    finally:
        st_mod.remove(gw.name)
        logger.removeHandler(handler)
        handler.close()
        lock.release()


def start_detached(gw: Gateway, timeout: float = 60.0) -> dict:
    """Start `python -m llmdeploy_cli.gateway.daemon FILE` in its own session; return once
    it listens (its control file appears), or raise with its log's last lines."""
    from llmdeploy_cli.gateway.server import read_control
    from llmdeploy_cli.supervise import state as st_mod

    if st_mod.is_locked(gw.name):
        raise PreflightError(
            f"'{gw.name}' is already running", hint=f"stop it first: llmctl stop {gw.name}"
        )
    try:
        os.unlink(st_mod.runs_dir() / f"{gw.name}.gateway.json")
    except OSError:
        pass
    logf = open(st_mod.log_path(gw.name), "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmdeploy_cli.gateway.daemon", str(gw.file)],
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=logf,
        start_new_session=True,
    )
    logf.close()
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        doc = read_control(gw.name)
        if doc and doc.get("pid") == proc.pid:
            return {"name": gw.name, "url": doc["url"], "pid": proc.pid}
        if proc.poll() is not None:
            from llmdeploy_cli.supervise.logfile import read_tail

            tail = read_tail(st_mod.log_path(gw.name), 5)
            raise LlmctlError(
                f"the gateway exited with status {proc.returncode} before it listened",
                hint=tail[-1] if tail else f"see llmctl logs {gw.name}",
            )
        time.sleep(0.05)
    proc.terminate()
    raise LlmctlError(f"the gateway did not listen within {timeout:g} s")


def call(name: str, method: str, path: str, timeout: float = 120.0) -> dict:
    """One control request to the running gateway `name`."""
    import httpx

    from llmdeploy_cli.gateway.server import CONTROL_HEADER, read_control

    doc = read_control(name)
    if doc is None:
        raise UnreachableError(f"no gateway '{name}' is running", hint="see llmctl status")
    try:
        r = httpx.request(
            method,
            doc["url"] + path,
            headers={CONTROL_HEADER: doc["token"]},
            timeout=timeout,
            trust_env=False,
        )
    except httpx.HTTPError as e:
        raise UnreachableError(f"the gateway '{name}' did not answer: {e}") from None
    try:
        return r.json()
    except ValueError:
        raise UnreachableError(f"the gateway '{name}' answered {r.status_code}") from None


def unload(name: str, profile: str) -> dict:
    """`llmctl stop NAME/PROFILE`: stop one model, leave the gateway up."""
    t0 = time.monotonic()
    doc = call(name, "POST", f"/llmctl/unload/{profile}")
    if not doc.get("ok"):
        raise LlmctlError(doc.get("message", "unload refused"), hint="see llmctl status")
    return {
        "name": f"{name}/{profile}",
        "stopped": True,
        "was": "ready",
        "seconds": round(time.monotonic() - t0, 3),
    }
