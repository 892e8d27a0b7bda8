"""Golden files: every example profile exported to every target, byte for byte.

Regenerate after an intended change with
`LLMCTL_UPDATE_GOLDEN=1 pytest tests/export/test_export_golden.py` and review the diff.
Rendered in a fixed environment (HOME, state dir, secrets, engine version), so the files do
not depend on the machine; paths under the checkout read $REPO.
"""

from __future__ import annotations

import os

import pytest
from exporthelp import (
    ENVIRON,
    EXAMPLES,
    GOLDEN,
    MULTINODE,
    NO_DEFAULT_IMAGE,
    ROOT,
    SECRET_VALUES,
    has_default_image,
    pinned_version,
)

from llmdeploy_cli.export import TARGETS, export
from llmdeploy_cli.export.common import ExportOptions


def _opts(path, **kw) -> ExportOptions:
    import yaml

    backend = yaml.safe_load(path.read_text())["backend"]
    image = None if has_default_image(backend) else NO_DEFAULT_IMAGE
    return ExportOptions(image=image, engine_version=pinned_version(path), **kw)


CASES = [(p, t, {}, f"{p.stem}/{t}") for p in EXAMPLES for t in TARGETS] + [
    (MULTINODE, "kubernetes", {"nodes": 2}, "llama-405b-2-nodes/kubernetes"),
    (MULTINODE, "kubernetes", {}, "llama-405b/kubernetes"),
    (
        ROOT / "profiles" / "ollama-gguf.yml",
        "kubernetes",
        {"cache": "hostpath", "host_path": "/srv/ollama", "namespace": "llm"},
        "ollama-gguf-hostpath/kubernetes",
    ),
]


@pytest.fixture
def fixed_env(monkeypatch):
    monkeypatch.setenv("LLMCTL_STATE_DIR", "/state/llmctl")
    monkeypatch.setenv("HOME", "/home/user")
    for var in ("LLMCTL_DEMO_MODEL", "LLMCTL_ENGINES_DIR", "MINILM_DIR", "INFINITY_VENV"):
        monkeypatch.delenv(var, raising=False)  # golden files must not depend on the machine


@pytest.mark.parametrize(
    "path,target,kw,golden", [c for c in CASES if c[0].exists()], ids=lambda c: str(c)
)
def test_export_matches_golden(path, target, kw, golden, fixed_env):
    bundle = export(path, target, _opts(path, **kw), ENVIRON)
    folder = GOLDEN / golden
    got = {rel: text.replace(str(ROOT), "$REPO") for rel, text in bundle.files}
    for text in got.values():
        for s in SECRET_VALUES:
            assert s not in text, f"a secret leaked into {golden}"
    if os.environ.get("LLMCTL_UPDATE_GOLDEN") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.rglob("*"):
            if old.is_file() and str(old.relative_to(folder)) not in got:
                old.unlink()
        for rel, text in got.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
    assert folder.is_dir(), f"no golden files: run LLMCTL_UPDATE_GOLDEN=1 pytest {__file__}"
    have = {str(f.relative_to(folder)): f.read_text() for f in folder.rglob("*") if f.is_file()}
    assert set(have) == set(got)
    for rel in got:
        assert have[rel] == got[rel], f"{golden}/{rel} differs from the golden file"


def test_every_example_has_goldens_for_every_target():
    for p in EXAMPLES:
        for t in TARGETS:
            assert (GOLDEN / p.stem / t).is_dir(), f"missing golden {p.stem}/{t}"
