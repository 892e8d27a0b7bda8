"""LMDeploy's flag reader: the `api_server` parser that `lmdeploy serve` registers (as
lmdeploy.cli.entrypoint.run does).

Run by llmdeploy_cli/flag_snapshot.py inside LMDeploy's environment (stdlib + LMDeploy).
"""

from __future__ import annotations

import contextlib
import sys


def read(walkers) -> list[dict]:
    # lmdeploy's logger writes import-time warnings to stdout, where the JSON goes.
    with contextlib.redirect_stdout(sys.stderr):
        from lmdeploy.cli.serve import SubCliServe

    sub = SubCliServe.subparsers  # an argparse _SubParsersAction (0.18: no underscore)
    if "api_server" not in sub.choices:
        SubCliServe.add_parsers()
    parser = sub.choices.get("api_server")
    if parser is None:
        raise RuntimeError("lmdeploy: could not find the api_server parser")
    return [{"command": "lmdeploy serve api_server", "options": walkers.argparse_options(parser)}]
