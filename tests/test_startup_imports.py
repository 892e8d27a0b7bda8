"""`llmctl --help`, `render` and `validate` import no torch, no engine, no HTTP client."""

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
    "tokenizers",
    "psutil",
]

PROBE = """
import json, sys
from llmdeploy_cli.cli.app import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported_by(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    last = proc.stderr.strip().splitlines()[-1]
    doc = json.loads(last)
    assert doc["code"] == 0, proc.stderr
    return {m.split(".")[0] for m in doc["modules"]}


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
