"""Faults with real processes: stand-in engines (tests/serve/engines) for what a real engine
cannot be made to show here (a CUDA OOM, a hang, worker processes), real llmctl processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from llmdeploy_cli.supervise.process import start_time
from tests.serve.conftest import (
    alive,
    group_left,
    kill_quietly,
    llmctl,
    popen_llmctl,
    read_state,
    wait_until,
)

pytestmark = pytest.mark.slow


def _pids_from_log(name: str) -> tuple[int, int]:
    log = os.path.join(os.environ["LLMCTL_STATE_DIR"], "logs", f"{name}.log")
    m = wait_until(
        lambda: (
            re.search(r"hang engine pid (\d+) worker (\d+)", open(log).read())
            if os.path.exists(log)
            else None
        ),
        what="the hang engine's pids in its log",
    )
    return int(m.group(1)), int(m.group(2))


def test_crash_while_loading_fails_at_once_with_diagnosis(tiny_model, fake_engine, profile_file):
    exe = fake_engine("crash")
    p = profile_file(
        "crashy",
        tiny_model,
        f"""
        runtime:
          executable: {exe}
          engine_version: "0.33.0"
        resources:
          gpu_memory_utilization: 0.9
          max_model_len: 512
          max_num_seqs: 64
        """,
        backend="vllm",
    )
    t0 = time.monotonic()
    r = llmctl("serve", p, "--json", "--no-smoke")
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    assert took < 15, "a crash while loading must fail at once, not at a deadline"
    err = json.loads(r.stdout)["error"]
    assert "exited with status 1" in err["message"]
    assert "out of GPU memory" in err["hint"]
    assert "gpu_memory_utilization from 0.9 to 0.80" in err["hint"]
    # max_model_len is at the tiny model's own limit (512; preflight refuses more, as vLLM
    # does): the advice is the other budget it translates
    assert "max_num_seqs from 64 to 32" in err["hint"]
    assert err["details"][0]["cause"] == "oom"
    assert "CUDA out of memory" in r.stderr  # the engine's own lines were echoed live
    assert read_state("crashy") is None
    assert "Traceback" not in r.stderr.split("CUDA out of memory")[-1]  # no llmctl traceback


def test_crash_while_loading_detached_prints_log_tail(tiny_model, fake_engine, profile_file):
    p = profile_file("crashy-d", tiny_model, f"runtime:\n  executable: {fake_engine('crash')}\n")
    r = llmctl("serve", p, "--detach")
    assert r.returncode == 1, r.stderr
    assert "last lines of the engine log" in r.stderr
    assert "CUDA out of memory" in r.stderr
    assert "hint:" in r.stderr
    assert read_state("crashy-d") is None  # nothing left claiming to run
    assert llmctl("status", "--json").stdout.count('"name"') == 0


def test_never_ready_times_out_and_kills_the_group(tiny_model, fake_engine, profile_file):
    p = profile_file(
        "hangs",
        tiny_model,
        f"""
        runtime:
          executable: {fake_engine("hang")}
        health:
          start_timeout: 1.5
          extend_on_progress: false
        """,
    )
    proc = popen_llmctl("serve", p, "--json", "--no-smoke")
    leader, worker = _pids_from_log("hangs")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    doc = json.loads(out)["error"]
    assert doc["kind"] == "not_ready" and "start_timeout" in doc["hint"]
    assert not alive(leader) and not alive(worker)
    assert group_left(leader) == []


def test_overall_timeout_and_progress_extension(tiny_model, fake_engine, profile_file):
    exe = fake_engine("hang")
    quiet = profile_file("quiet", tiny_model, f"runtime:\n  executable: {exe}\n")
    t0 = time.monotonic()
    r = llmctl("serve", quiet, "--timeout", "1", "--no-smoke")
    assert r.returncode == 4 and "--timeout 1" in r.stderr
    assert time.monotonic() - t0 < 20
    # A log that keeps moving extends a phase deadline, up to 3x the timeout.
    busy = profile_file(
        "busy", tiny_model, f"runtime:\n  executable: {exe}\nhealth:\n  start_timeout: 1\n"
    )
    from tests.serve.conftest import llmctl_env

    t0 = time.monotonic()
    r = llmctl("serve", busy, "--no-smoke", env=llmctl_env(HANG_PROGRESS="1"))
    took = time.monotonic() - t0
    assert r.returncode == 4, r.stderr
    assert took >= 2.5, f"failed after {took:.1f} s although the log kept moving"


def test_stop_while_loading(tiny_model, fake_engine, profile_file):
    p = profile_file("loading", tiny_model, f"runtime:\n  executable: {fake_engine('hang')}\n")
    proc = popen_llmctl("serve", p, "--detach", "--no-smoke")
    try:
        leader, worker = _pids_from_log("loading")
        st = wait_until(lambda: read_state("loading"), what="state")
        assert st["phase"] == "starting"
        r = llmctl("stop", "loading", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["stopped"][0]["was"] == "starting"
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "stopped before it was ready" in err
        assert not alive(leader) and not alive(worker)
        assert not alive(st["supervisor_pid"])
        assert read_state("loading") is None
    finally:
        proc.kill()


def test_ctrl_c_while_loading_in_the_foreground(tiny_model, fake_engine, profile_file):
    p = profile_file("fg-loading", tiny_model, f"runtime:\n  executable: {fake_engine('hang')}\n")
    proc = popen_llmctl("serve", p, "--json")
    try:
        leader, worker = _pids_from_log("fg-loading")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert out == ""  # never ready: no document
        assert not alive(leader) and not alive(worker)
        assert read_state("fg-loading") is None
    finally:
        proc.kill()
        kill_quietly(leader)


def test_kill9_of_foreground_llmctl_leaves_no_group(tiny_model, fake_engine, profile_file):
    """pdeathsig takes the leader, the watchdog takes its workers."""
    p = profile_file("orphan", tiny_model, f"runtime:\n  executable: {fake_engine('hang')}\n")
    proc = popen_llmctl("serve", p, "--no-smoke")
    try:
        leader, worker = _pids_from_log("orphan")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not group_left(leader), timeout=20, what="the engine group to go")
        assert not alive(leader) and not alive(worker)
    finally:
        kill_quietly(leader)


def test_kill9_of_the_detached_supervisor(tiny_model, fake_engine, profile_file):
    p = profile_file("lost", tiny_model, f"runtime:\n  executable: {fake_engine('hang')}\n")
    proc = popen_llmctl("serve", p, "--detach")
    try:
        leader, worker = _pids_from_log("lost")
        sup = read_state("lost")["supervisor_pid"]
        os.kill(sup, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "supervisor exited" in err
        wait_until(lambda: not group_left(leader), timeout=20, what="the engine group to go")
        assert not alive(worker)
        assert read_state("lost") is None  # serve cleaned the stale record itself
    finally:
        proc.kill()
        kill_quietly(leader)


def test_port_taken_names_the_holder(tiny_model, profile_file):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
            "print(s.getsockname()[1], flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(holder.stdout.readline())
        p = profile_file("taken", tiny_model)
        p.write_text(p.read_text().replace("port: auto", f"port: {port}"))
        r = llmctl("serve", p, "--json")
        assert r.returncode == 3, r.stderr
        err = json.loads(r.stdout)["error"]
        assert f"port {port} is already in use by pid {holder.pid}" in err["message"]
        assert err["kind"] == "preflight"
    finally:
        holder.kill()
        holder.wait()


def test_preflight_lists_every_problem(tmp_path, profile_file, monkeypatch):
    p = profile_file(
        "broken",
        tmp_path / "no-such-model",
        "runtime:\n  executable: /nonexistent/transformers\n",
    )
    r = llmctl("serve", p, "--json")
    assert r.returncode == 3
    err = json.loads(r.stdout)["error"]
    checks = {d["check"] for d in err["details"]}
    assert {"executable", "model.files"} <= checks
    assert "llmctl engine install transformers" in err["hint"]  # the fix since a3f41cd


def test_stale_state_is_cleaned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs = tmp_path / "runs"
    state = {
        "name": "ghost",
        "backend": "transformers",
        "profile": None,
        "profile_hash": None,
        "base_url": "http://127.0.0.1:1/v1",
        "model": "m",
        "port": 1,
        "log": "/dev/null",
        "phase": "ready",
        "supervisor_pid": dead.pid,
        "supervisor_started": 1.0,
    }
    root = os.environ["LLMCTL_STATE_DIR"]
    os.makedirs(os.path.join(root, "runs"), exist_ok=True)
    with open(os.path.join(root, "runs", "ghost.json"), "w") as f:
        json.dump(state, f)
    r = llmctl("status", "--json")
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)["runs"][0]
    assert run["state"] == "stale (cleaned)"
    assert read_state("ghost") is None
    assert not runs.exists() or True


def test_reused_pid_is_not_signalled():
    """A state names a pid that now belongs to someone else (another start time)."""
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        real_start = wait_until(lambda: start_time(bystander.pid))
        state = {
            "name": "reused",
            "backend": "transformers",
            "profile": None,
            "profile_hash": None,
            "base_url": "http://127.0.0.1:1/v1",
            "model": "m",
            "port": 1,
            "log": "/dev/null",
            "phase": "ready",
            "supervisor_pid": bystander.pid,
            "supervisor_started": real_start - 1000.0,
            "engine_pid": bystander.pid,
            "engine_started": real_start - 1000.0,
            "pgid": bystander.pid,
        }
        root = os.environ["LLMCTL_STATE_DIR"]
        os.makedirs(os.path.join(root, "runs"), exist_ok=True)
        with open(os.path.join(root, "runs", "reused.json"), "w") as f:
            json.dump(state, f)
        r = llmctl("stop", "reused", "--json")
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
        assert bystander.poll() is None, "a process that merely reuses the pid was signalled"
        assert read_state("reused") is None
    finally:
        bystander.kill()
        bystander.wait()


def test_lost_race_for_the_run_lock_is_a_preflight_failure(
    tiny_model, fake_engine, profile_file, monkeypatch
):
    """Two serves that both passed preflight: the supervisor that loses the lock says so."""
    from llmdeploy_cli.errors import PreflightError
    from llmdeploy_cli.supervise import control, state

    p = profile_file("raced", tiny_model, f"runtime:\n  executable: {fake_engine('hang')}\n")
    lock = state.RunLock("raced")
    assert lock.acquire()  # the winner
    try:
        bin_dir = os.path.dirname(sys.executable)
        monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ["PATH"])
        with pytest.raises(PreflightError, match="already being served"):
            control.start_detached(p, "raced", port=None, timeout=30)
    finally:
        lock.release()
    assert read_state("raced") is None


def test_stop_during_the_smoke_of_a_detached_serve(tiny_model, fake_engine, tmp_path):
    """The failure table's stop column: a stop that lands while a detached serve smokes
    stops the run (it used to be ignored: `ready` was printed and the server kept running)."""
    from tests.fakes import slow_chat_profile
    from tests.serve.conftest import llmctl_env

    p = slow_chat_profile(tmp_path, fake_engine, tiny_model, "slow-smoke", served_name="slow")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmdeploy_cli", "serve", str(p), "--detach", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=llmctl_env(SLOW_CHAT_S="3"),
    )
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "smoke ..." in line:
                break
        st = read_state("slow-smoke")
        assert st and st["phase"] == "ready", "".join(seen)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert out == "" and "stopped" in err
        assert not alive(st["supervisor_pid"]) and group_left(st["pgid"]) == []
        assert read_state("slow-smoke") is None
    finally:
        proc.kill()
        st = read_state("slow-smoke")
        if st:
            kill_quietly(st.get("pgid"))
