"""Read an engine's exact CLI option strings from its real parser (stdlib + the engine only).

Run it with the Python of the environment the engine is installed in, giving it what the
backend declares as its `flag_source` (llmdeploy_cli/capabilities.py FlagSource) as JSON:

    ENV/bin/python llmdeploy_cli/flag_snapshot.py --spec "$(llmctl backends --flag-spec vllm)" \
        > llmdeploy_cli/data/flags/vllm-0.33.0.json

The spec names the distribution whose version the snapshot records and either the
commands to read as data (reader argparse, click or typer; an import target `module:attr`;
the command words argv starts with) or a standalone reader file shipped with the backend
(`read(walkers)`, handed this module). It introspects the parser object instead of
scraping `--help` (argparse accepts abbreviations, so "it parses" proves nothing; vLLM's
grouped help also takes ~30 s), and prints one JSON document: every option string with
whether it takes a value and its choices. `llmctl render --check-flags` runs this same file
in the engine's environment and caches the result per engine version; the committed
snapshots let the tests check every rendered flag on machines without the engines.

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
import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402

SCHEMA = 1


# -- parser walkers --------------------------------------------------------------------------


def argparse_options(parser: argparse.ArgumentParser) -> dict:
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


def click_options(command) -> dict:
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


def typer_command(app, name: str):
    """A click command from a Typer app (or an app that already is a click group)."""
    group = app
    if not hasattr(group, "commands"):
        import typer.main

        group = typer.main.get_command(app)
    return group.commands[name] if name else group


def click_options_with_nargs(command) -> dict:
    """_click_options plus the value count of options that take several (`--env KEY VALUE`)."""
    out = click_options(command)
    for param in command.params:
        nargs = getattr(param, "nargs", 1)
        if param.param_type_name == "option" and isinstance(nargs, int) and nargs > 1:
            for opt in param.opts:
                if out.get(opt, {}).get("takes_value"):
                    out[opt]["nargs"] = nargs
    return out


# -- reading what a spec declares -----------------------------------------------------------


def load_target(target: str):
    """`module:attr.path` -> the object; called when it is a function (a parser factory)."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    if callable(obj) and not _is_parser(obj):
        obj = obj()
    return obj


def _is_parser(obj) -> bool:
    return (
        isinstance(obj, argparse.ArgumentParser)
        or hasattr(obj, "params")
        or (type(obj).__name__ == "Typer")
    )


def read_command(cmd: dict) -> dict:
    """One declared command (capabilities.FlagCommand as a dict) -> its document."""
    obj = load_target(cmd["target"])
    reader = cmd["reader"]
    if reader == "argparse":
        options = argparse_options(obj)
    elif reader in ("click", "typer"):
        command = typer_command(obj, cmd.get("subcommand") or "") if reader == "typer" else obj
        if reader == "click" and cmd.get("subcommand"):
            command = obj.commands[cmd["subcommand"]]
        options = click_options_with_nargs(command)
    else:
        raise ValueError(f"unknown reader {reader!r} (argparse, click or typer)")
    doc = {"command": cmd["command"], "options": options}
    if cmd.get("passes_unknown"):
        doc["passes_unknown"] = True
    if cmd.get("note"):
        doc["note"] = cmd["note"]
    return doc


def read_file(path: str) -> list[dict]:
    """A backend's standalone reader file: its read(walkers), handed this module."""
    spec = importlib.util.spec_from_file_location("llmctl_flag_reader", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the reader file {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.read(sys.modules[__name__])


def snapshot(spec: dict) -> dict:
    if spec.get("reader_file"):
        commands = read_file(spec["reader_file"])
    else:
        commands = [read_command(c) for c in spec["commands"]]
    dist = spec["distribution"]
    return {
        "schema": SCHEMA,
        "engine": spec["engine"],
        "distribution": dist,
        "version": importlib.metadata.version(dist),
        "python": sys.version.split()[0],
        "commands": commands,
    }


USAGE = "usage: flag_snapshot.py --spec JSON  (the JSON: llmctl backends --flag-spec NAME)"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--spec":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        spec = json.loads(argv[1])
        if not isinstance(spec, dict) or not {"engine", "distribution"} <= set(spec):
            raise ValueError("needs engine and distribution")
    except ValueError as e:
        print(f"flag_snapshot.py: not a flag spec: {e}", file=sys.stderr)
        return 2
    # Engines log to stdout while importing (vLLM does): send fd 1 to stderr until the
    # JSON is ready, so stdout carries the document and nothing else.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        doc = snapshot(spec)
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
