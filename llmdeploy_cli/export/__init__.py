"""Export one profile to the engines people already run for scale-out (docs/scale-out.md).

`export(path, target, opts)` renders the profile through its backend (as `llmctl render`
does, with the bind host opened for containers) and maps the plan to Kubernetes, docker
compose or systemd. Pure: it returns text; the CLI writes it.
"""

from __future__ import annotations

TARGETS = ("kubernetes", "compose", "systemd")


def export(path, target: str, opts=None, environ=None, *, probe_tool: str = "python3"):
    """Render `path` for `target`; returns an export.common.Bundle (files + notes)."""
    from llmdeploy_cli.export import common

    opts = opts or common.ExportOptions()
    if target not in TARGETS:
        raise common.ExportError(
            f"unknown export target '{target}'", hint=f"one of: {', '.join(TARGETS)}"
        )
    if opts.nodes > 1 and target != "kubernetes":
        raise common.ExportError(
            f"--nodes {opts.nodes}: {target} runs on one machine",
            hint="multi-node vLLM is exported with --to kubernetes (a LeaderWorkerSet)",
        )
    p = common.prepare(path, target, opts, environ, bind_all=target != "systemd")
    if target == "kubernetes":
        from llmdeploy_cli.export import kubernetes as mod
    elif target == "compose":
        from llmdeploy_cli.export import compose as mod
    else:
        from llmdeploy_cli.export import systemd as mod
    if target == "compose":
        bundle = mod.render(p, opts, probe_tool)
    else:
        bundle = mod.render(p, opts)
    common.check_no_leak(bundle, p.secret_values)
    return bundle
