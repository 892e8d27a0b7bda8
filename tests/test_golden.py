"""Golden tests: every example profile renders to exactly the committed argv/env/files.

Regenerate after an intended change with `LLMCTL_UPDATE_GOLDEN=1 pytest tests/test_golden.py`
and review the diff. Rendering is pinned to the engine version the profile names
(runtime.engine_version) or the backend's newest known, so results do not depend on what
is installed on the machine running the tests.
"""

from __future__ import annotations

import json
import os

import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile
from tests.conftest import GOLDEN, PROFILES, ROOT

# Fixed values so secrets and paths render the same everywhere.
ENVIRON = {"HOME": "/home/user", "LLMCTL_API_KEY": "sk-golden-secret", "HF_TOKEN": "hf_golden"}

EXAMPLES = sorted(PROFILES.glob("*.yml"))


def render_for_golden(path) -> dict:
    profile = load_profile(path, ENVIRON)
    version = profile.runtime.engine_version or registry.get(profile.backend).newest_known
    port = 54321 if profile.server.port == "auto" else None  # auto picks a free port
    r = resolve_profile(profile, ENVIRON, engine_version=version, port=port)
    return {"backend": profile.backend, **r.plan.as_dict()}


def test_there_is_an_example_per_backend():
    backends = {load_profile(p, ENVIRON).backend for p in EXAMPLES}
    assert set(registry.names()) <= backends


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_renders_to_golden(path, monkeypatch):
    monkeypatch.setenv("LLMCTL_STATE_DIR", "/state/llmctl")
    monkeypatch.delenv("LLMCTL_ENGINES_DIR", raising=False)  # engine: refs resolve under it
    got = render_for_golden(path)
    # Paths under the checkout differ per machine: golden files say $REPO.
    text = json.dumps(got, indent=2, sort_keys=True).replace(str(ROOT), "$REPO") + "\n"
    assert "sk-golden-secret" not in text and "hf_golden" not in text, "a secret leaked"
    golden = GOLDEN / f"{path.stem}.json"
    if os.environ.get("LLMCTL_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"no golden file: run LLMCTL_UPDATE_GOLDEN=1 pytest {__file__}"
    assert json.loads(golden.read_text()) == json.loads(text)
