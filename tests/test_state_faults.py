"""A state folder llmctl cannot use names itself (issue 16): the folder, the cause and the
way out (LLMCTL_STATE_DIR), exit 3, from every command that touches it; it used to be
"unexpected OSError ... report it" (exit 1).

A path that is (or is under) a file is real here; a read-only file system and a full disk
are injected (root ignores chmod, and there is no root-free tmpfs on this machine). The
serve-time faults, with real servers, are in tests/serve/test_state_faults_serve.py.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from llmdeploy_cli import paths
from llmdeploy_cli.cli.app import main
from llmdeploy_cli.errors import StateDirError
from tests.serve.conftest import llmctl, llmctl_env


def _llmctl(*args, state_dir):
    return llmctl(*args, timeout=60, env=llmctl_env(LLMCTL_STATE_DIR=state_dir))


@pytest.mark.parametrize("under", [False, True], ids=["is-a-file", "under-a-file"])
def test_a_state_path_that_is_a_file(tmp_path, under):
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    state = blocker / "llmctl" if under else blocker
    for args in (["status"], ["stop", "x"], ["logs", "x"], ["wait", "x", "--timeout", "1"]):
        r = _llmctl(*args, state_dir=state)
        assert r.returncode == 3, (args, r.stderr)
        assert "unexpected" not in r.stderr and "report it" not in r.stderr
        assert f"state folder {state} (from $LLMCTL_STATE_DIR)" in r.stderr, r.stderr
        assert f"{blocker} is a file, not a folder" in r.stderr
        assert "hint: " in r.stderr and "LLMCTL_STATE_DIR" in r.stderr
    r = _llmctl("status", "--json", state_dir=state)
    err = json.loads(r.stdout)["error"]
    assert r.returncode == 3 and err["code"] == 3 and err["kind"] == "state"
    assert "LLMCTL_STATE_DIR" in err["hint"]


def _inject(monkeypatch, target, code: int, where=None):
    real = target[1]

    def fail(*a, **k):
        path = where or (a[0] if a else None)
        raise OSError(code, os.strerror(code), os.fspath(path) if path else None)

    monkeypatch.setattr(target[0], target[2], fail)
    return real


def test_read_only_state_folder_is_named(tmp_path, monkeypatch, capsys):
    state = tmp_path / "ro-state"
    monkeypatch.setenv("LLMCTL_STATE_DIR", str(state))
    from pathlib import Path

    _inject(monkeypatch, (Path, Path.mkdir, "mkdir"), errno.EROFS)
    assert main(["status"]) == 3
    err = capsys.readouterr().err
    assert f"state folder {state} (from $LLMCTL_STATE_DIR) is on a read-only file system" in err
    assert "LLMCTL_STATE_DIR" in err.split("hint:")[1]


def test_full_disk_is_named_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCTL_STATE_DIR", str(tmp_path / "s"))
    paths.check_writable("runs")  # a healthy folder passes
    _inject(monkeypatch, (os, os.write, "write"), errno.ENOSPC, tmp_path / "s" / "runs")
    with pytest.raises(StateDirError) as e:
        paths.check_writable("runs")
    assert e.value.code == 3
    assert f"cannot write llmctl's state folder {tmp_path / 's'}" in e.value.message
    assert "no space left on its device" in e.value.message
    assert "df -h" in e.value.hint and "LLMCTL_STATE_DIR" in e.value.hint
    assert not any(p.name.startswith(".probe") for p in (tmp_path / "s" / "runs").iterdir())


def test_any_command_turns_a_state_oserror_into_the_named_fault(tmp_path, monkeypatch, capsys):
    """The one error handler: an OSError from anywhere under the state folder is a
    StateDirError (exit 3); another OSError names its file (exit 1), not 'unexpected'."""
    from llmdeploy_cli.supervise import control

    monkeypatch.setenv("LLMCTL_STATE_DIR", str(tmp_path / "s"))
    record = tmp_path / "s" / "runs" / "x.json"
    _inject(monkeypatch, (control, control.runs, "runs"), errno.ENOSPC, record)
    assert main(["status", "--json"]) == 3
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["kind"] == "state" and "no space left" in err["message"]
    assert str(record) in err["message"]
    _inject(monkeypatch, (control, control.runs, "runs"), errno.EACCES, tmp_path / "elsewhere")
    assert main(["status"]) == 1
    text = capsys.readouterr().err
    assert f"{tmp_path / 'elsewhere'}: Permission denied" in text and "unexpected" not in text


def test_status_reads_a_folder_it_cannot_write(tmp_path, monkeypatch):
    """is_locked opens the lock read-only: status does not need to write the folder."""
    from llmdeploy_cli.supervise import state

    monkeypatch.setenv("LLMCTL_STATE_DIR", str(tmp_path / "s"))
    lock = state.RunLock("held")
    assert lock.acquire()
    real_open = os.open
    try:

        def no_writes(path, flags, *a, **k):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(os, "open", no_writes)
        assert state.is_locked("held") is True
        assert state.is_locked("other") is False
    finally:
        monkeypatch.setattr(os, "open", real_open)
        lock.release()
    assert (tmp_path / "s" / "runs" / "held.lock").exists()
    assert state.is_locked("held") is False
