"""End to end with a real engine: `transformers serve` on CPU with the tiny model.

One detached server is shared by the tests of this module (each start costs ~10 s and
~460 MB); the foreground tests start their own. The model answers gibberish: only protocol
facts are asserted.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from tests.serve.conftest import (
    alive,
    group_left,
    json_out,
    kill_quietly,
    llmctl,
    llmctl_env,
    popen_llmctl,
    read_state,
    wait_until,
)

pytestmark = pytest.mark.slow

SECRET = "hf_sEcReT_tOkEn_1234567890"


@pytest.fixture(scope="module")
def shared(tiny_model, tmp_path_factory):
    """A detached server (restart on-failure) and the env that reaches its state dir."""
    state_dir = tmp_path_factory.mktemp("shared-state")
    env = llmctl_env(LLMCTL_STATE_DIR=state_dir, E2E_HF_TOKEN=SECRET)
    p = tmp_path_factory.mktemp("shared") / "e2e.yml"
    p.write_text(
        f"""name: e2e-tiny
backend: transformers
model:
  source: {tiny_model}
  dtype: float32
server:
  port: auto
resources:
  device: cpu
hub:
  token_env: E2E_HF_TOKEN
smoke:
  max_tokens: 4
restart:
  policy: on-failure
  max_restarts: 2
  backoff_initial: 0.2
"""
    )
    r = llmctl("serve", p, "--detach", "--json", env=env, timeout=180)
    assert r.returncode == 0, r.stderr + r.stdout
    doc = json_out(r)
    yield {"env": env, "profile": p, "doc": doc, "state_dir": state_dir, "serve": r}
    st = read_state("e2e-tiny", state_dir)
    llmctl("stop", "--all", env=env)
    if st and st.get("pgid"):
        kill_quietly(st["pgid"])


def test_detached_ready_doc(shared):
    doc = shared["doc"]
    assert doc["schema_version"] == 1
    assert doc["name"] == "e2e-tiny"
    assert doc["base_url"].startswith("http://127.0.0.1:")
    assert doc["model"] == str(Path(doc["model"]))  # the exact path transformers pins
    assert alive(doc["pid"])
    assert Path(doc["log"]).is_file()
    assert doc["smoke"]["ok"] is True
    timings = doc["readiness"]["timings_s"]
    assert set(timings) == {"port", "health", "after_ready", "completion"}  # no model rung
    assert doc["readiness"]["skipped"] == ["model"]


def test_status_and_security(shared):
    r = llmctl("status", "e2e-tiny", "--json", env=shared["env"])
    assert r.returncode == 0, r.stderr
    run = json_out(r)["runs"][0]
    assert run["state"] == "running" and run["phase"] == "ready"
    assert alive(run["engine_pid"]) and run["pgid"] == run["engine_pid"]
    assert run["supervisor_pid"] == shared["doc"]["pid"]
    assert run["profile_hash"].startswith("sha256:")
    # Secrets never reach status, JSON, the state file or the log.
    state_file = Path(shared["state_dir"]) / "runs" / "e2e-tiny.json"
    for text in (r.stdout, shared["serve"].stdout, state_file.read_text()):
        assert SECRET not in text
    assert SECRET not in Path(run["log"]).read_text()
    # Other users read nothing.
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(run["log"]).stat().st_mode) == 0o600
    text = llmctl("status", env=shared["env"]).stdout
    assert "e2e-tiny" in text and "ready" in text


def test_logs(shared):
    r = llmctl("logs", "e2e-tiny", "-n", "200", env=shared["env"])
    assert r.returncode == 0
    assert "[llmctl] endpoint answers" in r.stdout
    assert "POST /v1/chat/completions" in r.stdout
    assert len(llmctl("logs", "e2e-tiny", "-n", "3", env=shared["env"]).stdout.splitlines()) == 3


def test_wait_returns_when_ready(shared):
    r = llmctl("wait", "e2e-tiny", "--timeout", "5", "--json", env=shared["env"])
    assert r.returncode == 0, r.stderr
    assert json_out(r)["base_url"] == shared["doc"]["base_url"]


def test_second_serve_refused(shared):
    r = llmctl("serve", shared["profile"], "--detach", "--json", env=shared["env"])
    assert r.returncode == 3
    err = json_out(r)["error"]
    assert "already being served" in err["message"] and "llmctl stop e2e-tiny" in err["hint"]


def test_smoke_command_against_it(shared):
    r = llmctl("smoke", shared["profile"], "--json", env=shared["env"])
    assert r.returncode == 0, r.stderr + r.stdout


def test_managed_false_keeps_readiness_and_smoke_but_never_stops_it(shared, tmp_path):
    """A server llmctl does not run (here: the shared one, as if a system service)."""
    env = shared["env"]
    port = shared["doc"]["base_url"].split(":")[2].split("/")[0]
    p = tmp_path / "attached.yml"
    p.write_text(
        shared["profile"]
        .read_text()
        .replace("name: e2e-tiny", "name: attached")
        .replace("port: auto", f"port: {port}\n  managed: false")
    )
    r = llmctl("serve", p, "--detach", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json_out(r)
    assert doc["pid"] is None and doc["smoke"]["ok"]
    assert doc["base_url"] == shared["doc"]["base_url"]
    run = json_out(llmctl("status", "attached", "--json", env=env))["runs"][0]
    assert run["state"] == "running" and run["managed"] is False and run["engine_pid"] is None
    again = llmctl("serve", p, "--detach", "--json", env=env)
    assert again.returncode == 3  # already being served, even though llmctl does not run it
    assert llmctl("stop", "attached", env=env).returncode == 0
    assert read_state("attached", shared["state_dir"]) is None
    # Foreground: waits until Ctrl-C, then exits 130 without touching the server.
    proc = popen_llmctl("serve", p, "--no-smoke", env=env)
    assert proc.stdout.readline().startswith("ready")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert alive(read_state("e2e-tiny", shared["state_dir"])["engine_pid"])


def test_crash_after_ready_is_restarted_and_counted(shared):
    env = shared["env"]
    before = read_state("e2e-tiny", shared["state_dir"])
    os.kill(before["engine_pid"], signal.SIGKILL)

    def restarted():
        st = read_state("e2e-tiny", shared["state_dir"])
        return st if st and st["restarts"] == 1 and st["phase"] == "ready" else None

    st = wait_until(restarted, timeout=90, step=0.2, what="the engine to be restarted")
    assert st["engine_pid"] != before["engine_pid"]
    assert st["supervisor_pid"] == before["supervisor_pid"]
    log = llmctl("logs", "e2e-tiny", "-n", "400", env=env).stdout
    assert "restart #1 in 0.2 s (1 of at most 2 consecutive failures; 1 restart(s)" in log
    r = llmctl("smoke", shared["profile"], env=env)
    assert r.returncode == 0, r.stderr


def test_stop(shared):
    env = shared["env"]
    st = read_state("e2e-tiny", shared["state_dir"])
    follower = popen_llmctl("logs", "e2e-tiny", "-f", "-n", "0", env=env)
    time.sleep(1.0)
    r = llmctl("stop", "e2e-tiny", "--json", env=env)
    assert r.returncode == 0, r.stderr
    res = json_out(r)["stopped"][0]
    assert res["stopped"] and res["was"] == "ready"
    assert not alive(st["supervisor_pid"]) and not alive(st["engine_pid"])
    assert group_left(st["pgid"]) == []
    assert read_state("e2e-tiny", shared["state_dir"]) is None
    assert Path(st["log"]).is_file()  # kept for `llmctl logs` after the stop
    followed, _ = follower.communicate(timeout=15)  # -f ends with the run
    assert follower.returncode == 0
    assert "[llmctl] stopping the engine group" in followed
    again = llmctl("stop", "e2e-tiny", "--json", env=env)
    assert again.returncode == 0 and json_out(again)["stopped"][0]["stopped"] is False


def _foreground(profile_file, tiny_model, name):
    p = profile_file(name, tiny_model, "smoke:\n  max_tokens: 4\n")
    proc = popen_llmctl("serve", p)
    line = proc.stdout.readline()  # "ready NAME URL model=..." once ready and smoked
    assert line.startswith("ready"), line + proc.stderr.read() if proc.poll() else line
    st = read_state(name)
    assert st["phase"] == "ready" and st["supervisor_pid"] == proc.pid
    return proc, st


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_foreground_signal_stops_the_group(tiny_model, profile_file, sig, code):
    name = f"fg-{sig.name.lower()}"
    proc, st = _foreground(profile_file, tiny_model, name)
    try:
        t0 = time.monotonic()
        if sig == signal.SIGTERM:
            r = llmctl("stop", name, "--json")  # from another shell: SIGTERM to llmctl
            assert r.returncode == 0, r.stderr
        else:
            proc.send_signal(sig)
        assert proc.wait(30) == code
        took = time.monotonic() - t0
        assert not alive(st["engine_pid"]) and group_left(st["pgid"]) == []
        assert read_state(name) is None
        assert took < 15 + 1.0  # grace (transformers stops on SIGTERM well within it)
        assert "stopped" in proc.stderr.read()
    finally:
        proc.kill()
        kill_quietly(st["pgid"])


def test_foreground_kill9_leaves_nothing(tiny_model, profile_file):
    proc, st = _foreground(profile_file, tiny_model, "fg-kill9")
    try:
        # `llmctl wait` from another shell sees a foreground server as ready too.
        w = llmctl("wait", "fg-kill9", "--timeout", "5")
        assert w.returncode == 0 and w.stdout.startswith("ready  fg-kill9")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not group_left(st["pgid"]), timeout=10, what="the group to go")
        assert not alive(st["engine_pid"])
        # The state left behind is stale; status cleans it.
        r = llmctl("status", "--json")
        assert json.loads(r.stdout)["runs"][0]["state"] == "stale (cleaned)"
        assert read_state("fg-kill9") is None
    finally:
        kill_quietly(st["pgid"])


def test_foreground_engine_crash_after_ready_fails_with_policy_no(tiny_model, profile_file):
    proc, st = _foreground(profile_file, tiny_model, "fg-crash")
    try:
        os.kill(st["engine_pid"], signal.SIGKILL)
        assert proc.wait(30) == 1
        err = proc.stderr.read()
        assert "the engine was killed by SIGKILL (status -9) after it was ready" in err
        assert "hint: the engine was killed by SIGKILL" in err and "dmesg" in err
        assert "log:" in err and read_state("fg-crash") is None
        assert group_left(st["pgid"]) == []
    finally:
        proc.kill()
        kill_quietly(st["pgid"])
