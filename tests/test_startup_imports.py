"""`llmctl --help`, `render` and `validate` import no torch, no engine, no HTTP client or
server (httpx; aiohttp and the async stack: uvloop, orjson, prometheus_client)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROFILES

HEAVY = [
    "torch",
    "transformers",
    "openai",
    "ollama",
    "vllm",
    "lmdeploy",
    "xinference",
    "sglang",
    "numpy",
    "httpx",
    "aiohttp",
    "uvloop",
    "orjson",
    "prometheus_client",
    "tokenizers",
    "psutil",
]

PROBE = """
import json, sys
from llmdeploy_cli.cli.app import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def modules_after(*args: str) -> set[str]:
    """Every module `llmctl ARGS` has imported by the time it exits (it must succeed)."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    doc = json.loads(proc.stderr.strip().splitlines()[-1])
    assert doc["code"] == 0, proc.stderr
    return set(doc["modules"])


def imported_by(*args: str) -> set[str]:
    return {m.split(".")[0] for m in modules_after(*args)}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["render", str(PROFILES / "demo-cpu.yml")],
        ["render", str(PROFILES / "demo-cpu.yml"), "--json"],
        ["validate", *map(str, sorted(PROFILES.glob("*.yml")))],
    ],
    ids=["help", "render", "render-json", "validate"],
)
def test_no_heavy_imports(args, monkeypatch):
    monkeypatch.setenv("LLMCTL_API_KEY", "x")
    heavy = imported_by(*args) & set(HEAVY)
    assert not heavy, f"llmctl {args[0]} imported {sorted(heavy)}: import them lazily"


def test_command_table_names_what_each_module_registers():
    """build_app registers only the group of the command it is asked for: the table that
    says which module holds which command must match what the modules register."""
    import importlib

    import typer

    from llmdeploy_cli.cli.app import COMMAND_MODULES

    for module, names in COMMAND_MODULES.items():
        app = typer.Typer()
        importlib.import_module(module).register(app)
        got = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
        assert got == list(names), module


def test_a_command_loads_only_its_own_group():
    loaded = modules_after("render", str(PROFILES / "demo-cpu.yml"))
    assert "llmdeploy_cli.cli.profile_cmds" in loaded
    assert not loaded & {"llmdeploy_cli.cli.bench_cmd", "llmdeploy_cli.cli.serve_cmds"}
    everything = modules_after("--help")
    assert {"llmdeploy_cli.cli.bench_cmd", "llmdeploy_cli.cli.serve_cmds"} <= everything
