"""A gateway's models are runs named GATEWAY/PROFILE: state files without `/` in their
names, logs in the gateway's folder, and the old GATEWAY.PROFILE spelling refused with
the right one instead of stopping the whole gateway."""

from __future__ import annotations

import os

from llmdeploy_cli.supervise import control
from llmdeploy_cli.supervise import state as st_mod
from llmdeploy_cli.supervise.procgroup import start_time
from tests.e2e import run


def _record(name: str) -> st_mod.RunState:
    return st_mod.RunState(
        name=name,
        backend="gateway" if "/" not in name else "llamacpp",
        profile=None,
        profile_hash=None,
        base_url="http://127.0.0.1:1/v1",
        model="m",
        port=1,
        log=str(st_mod.log_path(name)),
        phase=st_mod.READY,
        supervisor_pid=os.getpid(),
        supervisor_started=start_time(os.getpid()),
    )


def test_gateway_model_state_and_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCTL_STATE_DIR", str(tmp_path))
    st_mod.save(_record("lab"))
    st_mod.save(_record("lab/chat-a"))
    files = sorted(p.name for p in st_mod.runs_dir().iterdir())
    assert files == ["lab+chat-a.json", "lab.json"]
    assert st_mod.names() == ["lab", "lab/chat-a"]
    assert st_mod.load("lab/chat-a").name == "lab/chat-a"
    assert st_mod.log_path("lab/chat-a") == st_mod.logs_dir() / "lab" / "chat-a.log"
    st_mod.log_path("lab/chat-a").write_text("x\n")
    assert "lab/chat-a" in control.known_names()
    lock = st_mod.RunLock("lab/chat-a")
    assert lock.acquire() and st_mod.is_locked("lab/chat-a") and not st_mod.is_locked("lab")
    lock.release()
    st_mod.remove("lab/chat-a")
    assert st_mod.names() == ["lab"]


def test_stop_of_the_old_spelling_is_refused_with_the_new_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCTL_STATE_DIR", str(tmp_path))
    env = dict(os.environ)
    st_mod.save(_record("lab"))  # a live gateway record (this process is its pid)
    out = run("stop", "lab.chat-a", env=env)
    assert out.returncode == 2
    assert "llmctl stop lab/chat-a" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "runs" / "lab.json").exists()  # the gateway was left alone
