"""Per-run state under the per-user state dir (docs/design.md §5).

    $STATE/runs/NAME.json   who runs what: supervisor and engine pids with start times,
                            pgid, port, base_url, model, log path, phase (mode 0600)
    $STATE/runs/NAME.lock   held (flock) by the supervisor for as long as it runs
    $STATE/logs/NAME.log    the engine's log (kept after a stop, for `llmctl logs`)

A gateway's engines are runs named `GATEWAY/PROFILE` (profile names never hold `/` nor
`+`): their state and lock are `runs/GATEWAY+PROFILE.*` (no `/` in a file name) and their
logs sit in the gateway's folder, `logs/GATEWAY/PROFILE.log`.

Directories are 0700 and files 0600: a run's state says where its server listens and its
log may hold engine output, neither of which other users need. Secrets are never written.

A state whose supervisor is gone (the lock is free and its pid is dead or reused) is stale:
`clean_stale` stops what is left of its engine group (verified by start time) and removes
it. A run that gave up (phase failed) is kept so `status` can say why, until the next
serve or stop of that name.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from llmdeploy_cli import paths

# Phases (docs/design.md §5); the state machine in machine.py moves between them.
STOPPED = "stopped"
STARTING = "starting"
READY = "ready"
BACKOFF = "backoff"
STOPPING = "stopping"
FAILED = "failed"


def state_root() -> Path:
    return paths.state_dir()


def runs_dir() -> Path:
    return paths.runs_dir()


def logs_dir() -> Path:
    return paths.logs_dir()


SEP = "/"  # GATEWAY/PROFILE: one model of a gateway
_FILE_SEP = "+"  # its stand-in in file names (never in a profile name)


def file_stem(name: str) -> str:
    """A run name as a file name: `GATEWAY/PROFILE` -> `GATEWAY+PROFILE`."""
    return name.replace(SEP, _FILE_SEP)


def name_of_stem(stem: str) -> str:
    return stem.replace(_FILE_SEP, SEP)


def state_path(name: str) -> Path:
    return runs_dir() / f"{file_stem(name)}.json"


def log_path(name: str) -> Path:
    """logs/NAME.log; a gateway engine's log is in its gateway's folder,
    logs/GATEWAY/PROFILE.log."""
    if SEP in name:
        gateway, profile = name.split(SEP, 1)
        folder = logs_dir() / gateway
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder / f"{file_stem(profile)}.log"
    return logs_dir() / f"{name}.log"


def profile_hash(path: str | Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class RunState:
    name: str
    backend: str
    profile: str | None  # absolute path of the profile file
    profile_hash: str | None
    base_url: str
    model: str
    port: int | None
    log: str
    phase: str = STARTING
    managed: bool = True
    detached: bool = False
    supervisor_pid: int | None = None
    supervisor_started: float | None = None
    engine_pid: int | None = None
    engine_started: float | None = None
    pgid: int | None = None
    started_at: float = field(default_factory=time.time)  # wall clock, for humans
    ready_at: float | None = None
    step: str | None = None  # readiness rung or after-ready action in progress
    restarts: int = 0
    timings: dict = field(default_factory=dict)
    error: dict | None = None  # {code, kind, message, hint, log_tail}
    stop_signal: int | None = None
    stop_grace_s: float | None = None
    # The state folder failed the running supervisor (a full disk): {what, message, since,
    # recovered}; the engine stays supervised meanwhile (session.py).
    storage_error: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def public(self) -> dict:
        """What status shows (there is nothing secret in a state; keep it that way)."""
        d = self.as_dict()
        d["pid"] = self.supervisor_pid
        d["uptime_s"] = round(time.time() - self.started_at, 1)
        return d


def save(st: RunState) -> None:
    """Atomic (temp file + rename), 0600 from the start. No fsync: a state only has to
    outlive its processes, not a power cut, and readiness writes it on every rung."""
    path = state_path(st.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(st.as_dict(), indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load(name: str) -> RunState | None:
    try:
        return RunState.from_dict(json.loads(state_path(name).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # a torn or foreign file: treated as absent (atomic writes prevent it)


def remove(name: str) -> None:
    try:
        state_path(name).unlink()
    except FileNotFoundError:
        pass


def names() -> list[str]:
    return sorted(name_of_stem(p.stem) for p in runs_dir().glob("*.json"))


# -- the run lock ---------------------------------------------------------------------------


class RunLock:
    """An exclusive flock on runs/NAME.lock, held by the supervisor while it runs.

    The kernel drops it when the holder dies however it dies, so a held lock means
    "running" with no stale case to get wrong.
    """

    def __init__(self, name: str):
        self.path = runs_dir() / f"{file_stem(name)}.lock"
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def is_locked(name: str) -> bool:
    """Whether a supervisor holds NAME's lock. Opens the lock read-only and creates
    nothing, so `status` works on a state folder that has become read-only."""
    path = runs_dir() / f"{file_stem(name)}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


# -- liveness -------------------------------------------------------------------------------


def supervisor_alive(st: RunState) -> bool:
    from llmdeploy_cli.supervise.procgroup import same_process

    return same_process(st.supervisor_pid, st.supervisor_started)


def liveness(st: RunState) -> str:
    """running | failed | stale."""
    if st.phase == FAILED and not supervisor_alive(st):
        return "failed"
    if is_locked(st.name) or supervisor_alive(st):
        return "running"
    if not st.managed and st.phase == READY:
        return "running"  # an unmanaged server: nothing of ours to be alive
    return "stale"


def clean_stale(st: RunState) -> bool:
    """Remove a stale state, stopping what is left of its engine group. True if cleaned."""
    if liveness(st) != "stale":
        return False
    stop_engine(st, grace_s=st.stop_grace_s or 5.0)
    remove(st.name)
    return True


def stop_engine(st: RunState, grace_s: float = 5.0) -> bool:
    """Stop the engine group a state records, if it is provably still ours."""
    if not st.pgid:
        return False
    from llmdeploy_cli.supervise.procgroup import group_members, stop_group

    if not group_members(st.pgid):
        return False
    return stop_group(
        st.pgid,
        st.stop_signal or 15,
        grace_s,
        leader=st.engine_pid,
        started=st.engine_started,
    )
