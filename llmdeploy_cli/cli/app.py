"""The `llmctl` command: one Typer app, one module per command group.

Every command raises LlmctlError on failure; `main` is the one place that turns it into
an exit code and either a one-line message (stderr) or the JSON envelope (stdout).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer

from llmdeploy_cli import __version__

# The module that registers each command (its register(app)); one line per command group.
COMMAND_MODULES = {
    "llmdeploy_cli.cli.profile_cmds": ("init", "validate", "render"),
    "llmdeploy_cli.cli.backends_cmd": ("backends",),
    "llmdeploy_cli.cli.models_cmds": ("doctor", "plan", "pull", "pack", "unpack"),
    "llmdeploy_cli.cli.serve_cmds": ("serve", "status", "logs", "stop", "wait"),
    "llmdeploy_cli.cli.smoke_cmd": ("smoke",),
    "llmdeploy_cli.cli.export_cmd": ("export",),
    "llmdeploy_cli.cli.bench_cmd": ("bench",),
    "llmdeploy_cli.cli.engine_cmds": ("engine",),
    "llmdeploy_cli.cli.gateway_cmd": ("gateway",),
}

_debug = os.environ.get("LLMCTL_DEBUG") == "1"


def _version(value: bool) -> None:
    if value:
        print(f"llmctl {__version__}")
        raise typer.Exit()


def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for failures.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    global _debug
    _debug = _debug or debug


def build_app(args: list[str] | None = None) -> typer.Typer:
    """The Typer app for one invocation. Typer turns every registered command into a click
    command on each start (evaluating its annotations, building its parameter adapters),
    so only the group that holds the command in `args` is registered; no command, or one
    not known here, registers all of them (`--help` lists every command)."""
    app = typer.Typer(
        name="llmctl",
        help="One YAML profile in, a served and verified LLM endpoint out.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    # The root options (--debug, --version) take no value: the first other word is the command.
    command = next((a for a in args or [] if not a.startswith("-")), None)
    wanted = [m for m, names in COMMAND_MODULES.items() if command in names]
    for module in wanted or COMMAND_MODULES:
        importlib.import_module(module).register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    from llmdeploy_cli.cli.output import emit_json, error_text
    from llmdeploy_cli.errors import ExitCode, LlmctlError

    args = sys.argv[1:] if argv is None else argv
    want_json = "--json" in args
    debug = "--debug" in args or _debug

    def fail(code: int, kind: str, message: str, hint: str | None = None, err=None) -> int:
        if err is not None:
            env = err.envelope()
        else:
            env = {"error": {"code": code, "kind": kind, "message": message}}
            if hint:
                env["error"]["hint"] = hint
        if want_json:
            emit_json(env)
        else:
            error_text(message, hint)
        return code

    try:
        rv = build_app(args)(args=args, prog_name="llmctl", standalone_mode=False)
    except LlmctlError as e:
        if debug:
            raise
        code = fail(int(e.code), e.kind, e.message, e.hint, err=e)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # noqa: BLE001 - the one place that hides tracebacks
        # Typer vendors its own click, so its exceptions are recognised by class name.
        kinds = {c.__name__ for c in type(e).__mro__}
        if "NoArgsIsHelpError" in kinds:
            print(e.ctx.get_help())
            code = 0
        elif "UsageError" in kinds:
            ctx = getattr(e, "ctx", None)
            hint = f"see '{ctx.command_path} --help'" if ctx is not None else None
            code = fail(int(ExitCode.USAGE), "usage", e.format_message(), hint)
        elif "Abort" in kinds:
            code = 130
        elif debug:
            raise
        elif isinstance(e, OSError) and e.filename and e.strerror:
            err = _os_error(e)
            code = fail(int(err.code), err.kind, err.message, err.hint, err=err)
        else:
            code = fail(
                int(ExitCode.RUNTIME),
                "internal",
                f"unexpected {type(e).__name__}: {e}",
                "run again with --debug for the traceback, and report it",
            )
    else:
        code = rv if isinstance(rv, int) else 0
    sys.stdout.flush()
    if argv is None:
        sys.exit(code)
    return code


def _os_error(e: OSError):
    """An OSError that names a file: in the state folder, a StateDirError (exit 3: which
    folder, why, LLMCTL_STATE_DIR); elsewhere, the file and the system's reason (exit 1)."""
    from llmdeploy_cli import paths
    from llmdeploy_cli.errors import LlmctlError

    if paths.under_state(e.filename):
        return paths.state_fault(e)
    import errno

    hints = {
        errno.ENOSPC: "free some space on that disk, or write somewhere else",
        errno.EROFS: "that file system is read-only: write somewhere else",
        errno.EACCES: "check the permissions of that path, or write somewhere else",
        errno.ENOENT: "check the path",
    }
    hint = hints.get(e.errno, "run again with --debug to see where it happened")
    err = LlmctlError(f"{os.fsdecode(e.filename)}: {e.strerror}", hint)
    err.kind = "os"
    return err


if __name__ == "__main__":
    main()
