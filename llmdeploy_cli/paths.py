"""Where llmctl keeps its files: the per-user state dir and what lives under it.

    STATE_DIR            $LLMCTL_STATE_DIR, else $XDG_STATE_HOME/llmctl, else ~/.local/state/llmctl
    STATE_DIR/runs/      one record and one lock per run (supervise/state.py)
    STATE_DIR/logs/      engine and supervisor logs, kept after a stop
    ENGINES_DIR          $LLMCTL_ENGINES_DIR, else STATE_DIR/engines (engines/store.py)

A leaf: it imports nothing of llmctl but errors.py (itself a leaf), so any module may ask
it where things are. `runs_dir()` and `logs_dir()` create their folder (0700: a run's
record says where its server listens and its log may hold engine output, neither of which
other users need).

A state folder llmctl cannot use (a full disk, a read-only file system, no permission, a
file where a folder should be) is a `StateDirError` (exit 3) that names the folder, the
cause and the way out (`LLMCTL_STATE_DIR`): `state_fault(oserror)` makes one, and
`check_writable()` finds out before anything is started.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.errors import StateDirError


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
    """STATE_DIR/sub, created 0700 (with STATE_DIR) when missing (StateDirError if not)."""
    root = state_dir()
    d = root / sub
    try:
        for p in (root, d):
            if not p.is_dir():
                p.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise state_fault(e, d) from None
    try:
        os.chmod(d, 0o700)
    except OSError:  # pragma: no cover - a read-only folder may still be read
        pass
    return d


def runs_dir() -> Path:
    return private_dir("runs")


def logs_dir() -> Path:
    return private_dir("logs")


# -- a state folder llmctl cannot use --------------------------------------------------------

_SPACE = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM}


def _source() -> str:
    """Where the state folder's path came from."""
    if os.environ.get("LLMCTL_STATE_DIR"):
        return "from $LLMCTL_STATE_DIR"
    if os.environ.get("XDG_STATE_HOME"):
        return "from $XDG_STATE_HOME"
    return "the default"


def _file_in_the_way(path: Path) -> Path | None:
    """The first part of `path` that exists and is not a folder (a file where one should be)."""
    for p in (*reversed(path.parents), path):
        if p.exists() and not p.is_dir():
            return p
        if not p.exists():
            return None
    return None


def under_state(path: str | os.PathLike | None) -> bool:
    """Whether `path` is the state folder or inside it."""
    if not path:
        return False
    try:
        p = Path(os.path.abspath(os.fsdecode(path)))
    except (TypeError, ValueError):
        return False
    root = Path(os.path.abspath(state_dir()))
    return p == root or root in p.parents


def state_fault(e: OSError, path: str | os.PathLike | None = None) -> StateDirError:
    """A StateDirError (exit 3) for an OSError met while using the state folder."""
    from llmdeploy_cli.errors import StateDirError

    root = state_dir()
    where = Path(os.fsdecode(path or e.filename or root))
    named = f"llmctl's state folder {root} ({_source()})"
    away = (
        "set LLMCTL_STATE_DIR to a folder that is yours, writable and has room "
        "(export LLMCTL_STATE_DIR=/path/to/folder)"
    )
    blocker = _file_in_the_way(where)
    code = e.errno
    if blocker is not None or code in (errno.ENOTDIR, errno.EEXIST):
        blocker = blocker or where
        msg = f"{named} cannot be made: {blocker} is a file, not a folder"
        hint = f"move that file away, or {away}"
    elif code in _SPACE:
        what = "no space left" if code == errno.ENOSPC else "the disk quota is used up"
        msg = f"cannot write {named}: {what} on its device ({where})"
        hint = f"free some space there (df -h {root}), or {away}"
    elif code == errno.EROFS:
        msg = f"{named} is on a read-only file system ({where})"
        hint = away
    elif code in _DENIED:
        msg = f"cannot write {named}: permission denied ({where})"
        hint = f"make it yours and writable (chmod u+rwx), or {away}"
    else:
        msg = f"cannot use {named}: {e.strerror or e} ({where})"
        hint = away
    err = StateDirError(msg, hint)
    err.errno = code
    err.path = str(where)
    return err


def check_writable(sub: str = "runs") -> Path:
    """Write (and remove) a small file in STATE_DIR/sub: a full disk, a read-only file
    system or a file in the way is a StateDirError now, before anything is started."""
    d = private_dir(sub)
    probe = d / f".probe-{os.getpid()}-{os.urandom(4).hex()}"  # threads serve at once
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
    except OSError as e:
        raise state_fault(e, d) from None
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass
    return d
