"""`render --check-flags` says what it is doing while an engine's parser is read (seconds:
about 17 s for vLLM), on stderr, and nothing once the parser is cached (issue 19 item 9)."""

from __future__ import annotations

import json
import sys

from llmdeploy_cli import flagcheck
from llmdeploy_cli.cli.app import main


def test_reading_an_installed_parser_shows_progress_then_is_cached(
    write_profile, capsys, monkeypatch, _isolated_state
):
    monkeypatch.setattr(flagcheck, "READ_TICK", 0.2)
    # transformers is installed in the test environment itself: a real installed engine
    path = write_profile(
        f"""
        name: t
        backend: transformers
        model: {{source: /models/tiny}}
        runtime: {{venv: {sys.prefix}}}
        resources: {{device: cpu}}
        """
    )
    assert main(["render", str(path), "--check-flags", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["flags"]["checked"]
    lines = err.splitlines()
    assert any(ln.startswith("render: reading transformers ") for ln in lines), err
    # importing transformers' CLI takes well over 0.2 s: the wait is not silent
    assert any(ln.startswith("render: still reading the transformers parser: ") for ln in lines)
    assert main(["render", str(path), "--check-flags", "--json"]) == 0
    assert "render: reading" not in capsys.readouterr().err  # cached: nothing to wait for
