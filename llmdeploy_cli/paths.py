"""Where llmctl keeps its files: the per-user state dir and what lives under it.

    STATE_DIR            $LLMCTL_STATE_DIR, else $XDG_STATE_HOME/llmctl, else ~/.local/state/llmctl
    STATE_DIR/runs/      one record and one lock per run (supervise/state.py)
    STATE_DIR/logs/      engine and supervisor logs, kept after a stop
    ENGINES_DIR          $LLMCTL_ENGINES_DIR, else STATE_DIR/engines (engines/store.py)

A leaf: it imports nothing of llmctl, so any module may ask it where things are.
`runs_dir()` and `logs_dir()` create their folder (0700: a run's record says where its
server listens and its log may hold engine output, neither of which other users need).
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """Per-user state dir: $LLMCTL_STATE_DIR, else $XDG_STATE_HOME/llmctl, else ~/.local/state."""
    if os.environ.get("LLMCTL_STATE_DIR"):
        return Path(os.environ["LLMCTL_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "llmctl"


def engines_dir() -> Path:
    """Where `llmctl engine install` puts engine environments."""
    env = os.environ.get("LLMCTL_ENGINES_DIR")
    if env:
        return Path(env).expanduser()
    return state_dir() / "engines"


def private_dir(sub: str) -> Path:
    """STATE_DIR/sub, created 0700 (with STATE_DIR) when missing."""
    root = state_dir()
    d = root / sub
    for p in (root, d):
        if not p.is_dir():
            p.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(d, 0o700)
    except OSError:  # pragma: no cover
        pass
    return d


def runs_dir() -> Path:
    return private_dir("runs")


def logs_dir() -> Path:
    return private_dir("logs")
