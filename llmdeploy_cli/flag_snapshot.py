"""Read an engine's exact CLI option strings from its real parser (stdlib + the engine only).

Run it with the Python of the environment the engine is installed in:

    ENV/bin/python llmdeploy_cli/flag_snapshot.py vllm > llmdeploy_cli/data/flags/vllm-0.33.0.json

It introspects the parser object instead of scraping `--help` (argparse accepts
abbreviations, so "it parses" proves nothing; vLLM's grouped help also takes ~30 s), and
prints one JSON document: every option string with whether it takes a value and its
choices. `llmctl render --check-flags` runs this same file in the engine's environment and
caches the result per engine version; the committed snapshots under data/flags/ let the
tests check every rendered flag on machines without the engines.

This file must not import llmdeploy_cli: the engine's environment does not have it.
"""

from __future__ import annotations

import os
import sys

# Run by path, this folder is sys.path[0], and its profile.py would shadow the stdlib
# module `profile` that the engines import (through cProfile). Drop it first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402

SCHEMA = 1


# -- parser walkers --------------------------------------------------------------------------


def _argparse_options(parser: argparse.ArgumentParser) -> dict:
    out = {}
    # `_option_string_actions` is the table argparse matches against: it also holds
    # spellings an action hides from its option_strings (vLLM 0.33 keeps accepting
    # `--no-enable-x` that way).
    table = parser._option_string_actions  # noqa: SLF001
    for opt_string, action in sorted(table.items()):
        if isinstance(action, argparse._HelpAction):
            continue
        takes_value = action.nargs != 0
        choices = None
        if action.choices is not None:
            try:
                choices = sorted(str(c) for c in action.choices)
            except TypeError:
                choices = None
        kind = getattr(action.type, "__name__", None) if action.type else None
        nargs = action.nargs if isinstance(action.nargs, (str, int)) else None
        spec = {"takes_value": takes_value, "choices": choices, "kind": kind}
        if nargs not in (None, 0, 1):
            spec["nargs"] = nargs  # "?", "*", "+" or a count
        out[opt_string] = spec
    return out


def _click_options(command) -> dict:
    out = {}
    for param in command.params:
        if not getattr(param, "opts", None) or param.param_type_name != "option":
            continue
        is_flag = bool(getattr(param, "is_flag", False) or getattr(param, "count", False))
        choices = None
        ptype = getattr(param, "type", None)
        if ptype is not None and hasattr(ptype, "choices"):
            choices = sorted(str(getattr(c, "value", c)) for c in ptype.choices)
        kind = type(ptype).__name__ if ptype is not None else None
        for opt in param.opts:
            out[opt] = {"takes_value": not is_flag, "choices": choices, "kind": kind}
        for opt in param.secondary_opts:  # --no-foo of a boolean flag
            out[opt] = {"takes_value": False, "choices": None, "kind": kind}
    return out


def _typer_command(app, name: str):
    """A click command from a Typer app (or an app that already is a click group)."""
    group = app
    if not hasattr(group, "commands"):
        import typer.main

        group = typer.main.get_command(app)
    return group.commands[name] if name else group


# -- engines --------------------------------------------------------------------------------


def vllm() -> list[dict]:
    """The parser `vllm serve` itself builds (ServeSubcommand.subparser_init)."""
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    import vllm.platforms as platforms

    # A GPU wheel on a machine without a GPU finds no platform, and some versions build
    # a DeviceConfig while making the parser. The option strings do not depend on the
    # platform, so resolve it to the CPU one (no kernels are loaded).
    plugins = getattr(platforms, "builtin_platform_plugins", None)
    if isinstance(plugins, dict) and "cpu" in plugins:
        plugins["cpu"] = lambda: "vllm.platforms.cpu.CpuPlatform"
        # Older CPU platforms probe a torch helper newer torch builds dropped; it only
        # picks kernels, which introspection never loads.
        import torch

        cpu = getattr(torch._C, "_cpu", None)
        if cpu is not None and not hasattr(cpu, "_is_avx512_supported"):
            cpu._is_avx512_supported = lambda: False
    from vllm.entrypoints.cli.serve import ServeSubcommand

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # before 0.11 it lived in vllm.utils
        from vllm.utils import FlexibleArgumentParser
    root = FlexibleArgumentParser(prog="vllm")
    parser = ServeSubcommand().subparser_init(root.add_subparsers())
    return [{"command": "vllm serve", "options": _argparse_options(parser)}]


def _stub_modules() -> list[str]:
    """Stand-ins for the modules named in FLAG_SNAPSHOT_STUB (comma-separated), put in place
    before the engine is imported. Only for an import chain that needs a GPU-only build
    which cannot load on the machine taking the snapshot (sglang 0.5.19 imports
    torchvision.io at the top of sglang.srt.utils.common); the parser read is still the
    engine's own. The names go into the JSON as "stubbed"."""
    import importlib.machinery
    import types

    names = [n.strip() for n in os.environ.get("FLAG_SNAPSHOT_STUB", "").split(",") if n.strip()]
    for name in names:

        def missing(attr: str, _name: str = name):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def call(*args, **kwargs):
                raise RuntimeError(f"{_name}.{attr} is a stub (FLAG_SNAPSHOT_STUB)")

            return call

        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []
        mod.__getattr__ = missing  # PEP 562: any attribute is a callable that refuses
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, mod)
    return names


def sglang() -> list[dict]:
    stubbed = _stub_modules()
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="sglang.launch_server")
    ServerArgs.add_cli_args(parser)
    cmd = {"command": "python -m sglang.launch_server", "options": _argparse_options(parser)}
    if stubbed:
        cmd["stubbed"] = stubbed
    return [cmd]


def lmdeploy() -> list[dict]:
    """The `api_server` parser that `lmdeploy serve` registers (as lmdeploy.cli.entrypoint.run)."""
    import contextlib

    # lmdeploy's logger writes import-time warnings to stdout, where the JSON goes.
    with contextlib.redirect_stdout(sys.stderr):
        from lmdeploy.cli.serve import SubCliServe

    sub = SubCliServe.subparsers  # an argparse _SubParsersAction (0.18: no underscore)
    if "api_server" not in sub.choices:
        SubCliServe.add_parsers()
    parser = sub.choices.get("api_server")
    if parser is None:
        raise RuntimeError("lmdeploy: could not find the api_server parser")
    return [{"command": "lmdeploy serve api_server", "options": _argparse_options(parser)}]


def _click_with_nargs(command) -> dict:
    """_click_options plus the value count of options that take several (`--env KEY VALUE`)."""
    out = _click_options(command)
    for param in command.params:
        nargs = getattr(param, "nargs", 1)
        if param.param_type_name == "option" and isinstance(nargs, int) and nargs > 1:
            for opt in param.opts:
                if out.get(opt, {}).get("takes_value"):
                    out[opt]["nargs"] = nargs
    return out


def xinference() -> list[dict]:
    """`xinference-local` (cmdline.local) and `xinference launch` (cmdline.model_launch)."""
    from xinference.deploy import cmdline

    local = cmdline.local
    launch = cmdline.model_launch
    return [
        {"command": "xinference-local", "options": _click_with_nargs(local)},
        {
            "command": "xinference launch",
            "options": _click_with_nargs(launch),
            # `launch` forwards unknown `--key value` pairs to the model as kwargs.
            "passes_unknown": True,
            "note": "the options listed are checked exactly; any other --key value pair is "
            "forwarded to the model as a keyword argument (allow_extra_args), so it cannot "
            "be checked here and is reported as a warning",
        },
    ]


def infinity() -> list[dict]:
    """`infinity_emb v2`: the Typer app of infinity_emb.cli (named `tp`; defined only when
    typer and uvicorn, the `server` extra, are importable)."""
    from infinity_emb import cli

    app = getattr(cli, "tp", None) or getattr(cli, "app", None)
    if app is None:
        raise RuntimeError("infinity_emb.cli has no Typer app: is the server extra (typer) there?")
    return [{"command": "infinity_emb v2", "options": _click_options(_typer_command(app, "v2"))}]


def transformers() -> list[dict]:
    from transformers.cli.transformers import app

    return [
        {"command": "transformers serve", "options": _click_options(_typer_command(app, "serve"))}
    ]


ENGINES = {
    "vllm": ("vllm", vllm),
    "sglang": ("sglang", sglang),
    "lmdeploy": ("lmdeploy", lmdeploy),
    "xinference": ("xinference", xinference),
    "infinity": ("infinity-emb", infinity),
    "transformers": ("transformers", transformers),
}


def snapshot(engine: str) -> dict:
    dist, read = ENGINES[engine]
    return {
        "schema": SCHEMA,
        "engine": engine,
        "distribution": dist,
        "version": importlib.metadata.version(dist),
        "python": sys.version.split()[0],
        "commands": read(),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ENGINES:
        print(f"usage: flag_snapshot.py {{{','.join(ENGINES)}}}", file=sys.stderr)
        return 2
    # Engines log to stdout while importing (vLLM does): send fd 1 to stderr until the
    # JSON is ready, so stdout carries the document and nothing else.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        doc = snapshot(argv[0])
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    sys.stdout.write(dumps(doc))
    return 0


def dumps(doc: dict) -> str:
    """JSON with one line per option, so a version bump reads as a small diff."""
    head = {k: v for k, v in doc.items() if k != "commands"}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "commands": [')
    for i, cmd in enumerate(doc["commands"]):
        lines.append("    {")
        for k, v in cmd.items():
            if k != "options":
                lines.append(f"      {json.dumps(k)}: {json.dumps(v)},")
        lines.append('      "options": {')
        opts = sorted(cmd["options"].items())
        for j, (opt, spec) in enumerate(opts):
            comma = "," if j < len(opts) - 1 else ""
            lines.append(f"        {json.dumps(opt)}: {json.dumps(spec, sort_keys=True)}{comma}")
        lines.append("      }")
        lines.append("    }" + ("," if i < len(doc["commands"]) - 1 else ""))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
