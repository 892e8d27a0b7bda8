"""`python -m llmdeploy_cli.gateway.daemon FILE`: the detached gateway (gateway serve
--detach), in its own session, with its output in the run's log."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from llmdeploy_cli.errors import LlmctlError
    from llmdeploy_cli.gateway.config import load_gateway
    from llmdeploy_cli.gateway.control import serve_foreground

    args = sys.argv[1:] if argv is None else argv
    try:
        return serve_foreground(load_gateway(args[0]))
    except LlmctlError as e:
        print(f"error: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
        return int(e.code)


if __name__ == "__main__":
    sys.exit(main())
