"""The state folder failing a serve, with real llmctl processes and a stand-in engine
(issue 16): a folder that cannot be used stops serve before anything starts (exit 3, named);
a disk that fills while a server runs leaves the engine supervised and the fault recorded.

ENOSPC comes from /dev/full (the engine log) or from a fault injected into the detached
supervisor (its state writes) through a sitecustomize module on PYTHONPATH: no tmpfs can
be mounted here without root, and root ignores chmod.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import textwrap
import time

import pytest

from tests.fakes import slow_chat_profile
from tests.serve.conftest import (
    alive,
    group_left,
    json_out,
    kill_quietly,
    llmctl,
    llmctl_env,
    read_state,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
def test_serve_into_a_state_path_that_is_a_file(tmp_path, fake_engine, tiny_model, detach):
    blocker = tmp_path / "state-file"
    blocker.write_text("")
    p = slow_chat_profile(tmp_path, fake_engine, tiny_model, "nostate")
    env = llmctl_env(LLMCTL_STATE_DIR=blocker / "llmctl")
    r = llmctl("serve", p, "--json", "--no-smoke", *(["--detach"] if detach else []), env=env)
    assert r.returncode == 3, r.stderr
    err = json_out(r)["error"]
    assert err["kind"] == "state" and f"{blocker} is a file, not a folder" in err["message"]
    assert "LLMCTL_STATE_DIR" in err["hint"]
    assert "slow chat engine" not in r.stderr  # nothing was started


def test_engine_log_on_a_full_disk(tmp_path, fake_engine, tiny_model):
    """The engine log cannot be written (ENOSPC from /dev/full): the server is served all
    the same, and status says what cannot be written."""
    state = os.environ["LLMCTL_STATE_DIR"]
    os.makedirs(os.path.join(state, "logs"), mode=0o700, exist_ok=True)
    log = os.path.join(state, "logs", "fulllog.log")
    os.symlink("/dev/full", log)
    mode = os.stat("/dev/full").st_mode
    p = slow_chat_profile(tmp_path, fake_engine, tiny_model, "fulllog")
    r = llmctl("serve", p, "--detach", "--no-smoke")
    try:
        assert r.returncode == 0, r.stderr
        assert os.stat("/dev/full").st_mode == mode  # a device the log names is not chmod'ed
        st = wait_until(
            lambda: (s := read_state("fulllog")) and s.get("storage_error") and s,
            timeout=20,
            what="the log fault in the state",
        )
        trouble = st["storage_error"]
        assert trouble["what"] == "engine log"
        assert "No space left on device" in trouble["message"] and log in trouble["message"]
        assert "still supervised" in trouble["message"]
        text = llmctl("status", "fulllog").stderr
        assert "warning: cannot write the run's engine log" in text
        assert alive(st["engine_pid"]) and alive(st["supervisor_pid"])
    finally:
        st = read_state("fulllog")
        r = llmctl("stop", "fulllog")
        assert r.returncode == 0, r.stderr
        if st:
            assert group_left(st["pgid"]) == [] and not alive(st["supervisor_pid"])


SITECUSTOMIZE = """
    import errno
    import os

    _trigger = os.environ.get("ENOSPC_TRIGGER")
    if _trigger:
        _replace = os.replace

        def replace(src, dst, *a, **k):
            if os.path.exists(_trigger) and os.sep + "runs" + os.sep in os.fspath(dst):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(dst))
            return _replace(src, dst, *a, **k)

        os.replace = replace
"""


def test_disk_fills_while_serving(tmp_path, fake_engine, tiny_model):
    """State writes fail (ENOSPC) while a detached server runs and its engine crashes: the
    supervisor used to die of the OSError; now it restarts the engine, records the fault
    in the log, and writes the state again once it can."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    trigger = tmp_path / "disk-is-full"
    env = llmctl_env(PYTHONPATH=inject, ENOSPC_TRIGGER=trigger)
    extra = "restart:\n  policy: on-failure\n  max_restarts: 2\n  backoff_initial: 0.1\n"
    p = slow_chat_profile(tmp_path, fake_engine, tiny_model, "filling", extra)
    r = llmctl("serve", p, "--detach", "--no-smoke", env=env)
    assert r.returncode == 0, r.stderr
    st = read_state("filling")
    log = st["log"]
    try:
        trigger.write_text("")
        os.kill(st["engine_pid"], signal.SIGKILL)
        wait_until(
            lambda: open(log).read().count("slow chat engine on port") == 2,
            timeout=30,
            what="the engine restarted while the state cannot be written",
        )
        text = open(log).read()
        assert "cannot write the run's state file (No space left on device" in text
        assert alive(st["supervisor_pid"])
        assert read_state("filling")["restarts"] == 0  # the record is behind, as it must be
        time.sleep(0.5)
        trigger.unlink()
        now = wait_until(
            lambda: (s := read_state("filling")) and s["restarts"] == 1 and s,
            timeout=20,
            what="the state written again",
        )
        assert now["phase"] == "ready" and now["engine_pid"] != st["engine_pid"]
        assert now["storage_error"]["what"] == "state file"
        assert now["storage_error"].get("recovered")
        assert "the run's state file can be written again" in open(log).read()
        words = open(os.path.join(os.path.dirname(log), "filling.supervisor.log")).read()
        assert "llmctl supervisor: warning: cannot write the run's state file" in words
        r = llmctl("status", "filling", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["runs"][0]["state"] == "running"
    finally:
        if trigger.exists():
            trigger.unlink()
        now = read_state("filling") or st
        assert llmctl("stop", "filling").returncode == 0
        for pgid in {st["pgid"], now.get("pgid")}:
            if pgid:
                assert group_left(pgid) == []
                kill_quietly(pgid)
        assert not alive(st["supervisor_pid"])
    assert stat.S_ISREG(os.stat(log).st_mode)
