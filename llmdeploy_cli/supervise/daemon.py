"""The detached supervisor: `python -m llmdeploy_cli.supervise.daemon PROFILE [--port N]`.

`llmctl serve --detach` starts this in its own session and returns once the state file it
writes says ready. It owns the engine (its process group), the log and the restart policy;
`llmctl stop NAME` sends it SIGTERM and it stops the group before it exits.

Kept small on purpose (docs/design.md §5): no rich, no openai, no torch — its resident memory
is what a long-running server costs on top of the engine (benchmarks/readiness.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def build_argv(profile: str, *, port: int | None, timeout: float | None) -> list[str]:
    argv = [sys.executable, "-m", "llmdeploy_cli.supervise.daemon", str(profile)]
    if port is not None:
        argv += ["--port", str(port)]
    if timeout is not None:
        argv += ["--timeout", repr(float(timeout))]
    return argv


def main(argv: list[str] | None = None) -> int:
    # httpx imports its command-line tool (and with it rich) when it can; the daemon never
    # needs it, and it costs ~6 MB of resident memory for as long as the server runs.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    os.umask(0o077)

    ap = argparse.ArgumentParser(prog="llmctl-supervisor")
    ap.add_argument("profile")
    ap.add_argument("--port", type=int)
    ap.add_argument("--timeout", type=float)
    args = ap.parse_args(argv)

    from llmdeploy_cli.supervise.stopflag import on_signals

    # The stop signals are taken before anything else is imported: a `llmctl stop` that
    # comes early still ends the run through the session, never by the default action.
    with on_signals(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as stop:
        from llmdeploy_cli.errors import LlmctlError
        from llmdeploy_cli.resolve import resolve
        from llmdeploy_cli.supervise.session import ServeSession

        def on_event(kind: str, message: str) -> None:
            if kind == "storage":  # also kept in the state and the log, where they can be
                _say(f"warning: {message}")

        try:
            r = resolve(args.profile, port=args.port)
            session = ServeSession(
                r,
                args.profile,
                detached=True,
                timeout=args.timeout,
                stop=stop,
                echo=None,
                on_event=on_event,
            )
            session.run()
        except LlmctlError as e:
            _say(e.message)
            return int(e.code)
        except OSError as e:
            from llmdeploy_cli import paths

            if not paths.under_state(e.filename):
                raise
            err = paths.state_fault(e)
            _say(err.message)
            return int(err.code)
    return 0


def _say(text: str) -> None:
    """A line for the supervisor log (`llmctl supervisor: ...`, which `serve --detach`
    reads back when the supervisor ends before its state says why)."""
    try:
        print(f"llmctl supervisor: {text}", file=sys.stderr, flush=True)
    except OSError:  # that log is on the full disk too
        pass


if __name__ == "__main__":
    sys.exit(main())
