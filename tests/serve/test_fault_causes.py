"""Faults name their cause (issue 16): a signal at a foreground serve, the restart count in
the log, an engine killed while loading, `stop` of a name llmctl never served. Real llmctl
processes and stand-in engines (tests/serve/engines)."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from tests.fakes import slow_chat_profile
from tests.serve.conftest import (
    alive,
    group_left,
    json_out,
    kill_quietly,
    llmctl,
    popen_llmctl,
    read_state,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_sighup_stops_a_foreground_serve_gracefully(tmp_path, fake_engine, tiny_model):
    """A closed terminal (SIGHUP) stops the engine group the way SIGTERM does, and the
    serve exits 129 (128 + 1); it used to die at once, leaving the engine to the
    parent-death SIGKILL."""
    p = slow_chat_profile(tmp_path, fake_engine, tiny_model, "hup")
    proc = popen_llmctl("serve", p, "--no-smoke")
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready  hup "), line + proc.stderr.read()
        st = read_state("hup")
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 129, err
        assert "hup: stopped" in err
        assert not alive(st["engine_pid"]) and group_left(st["pgid"]) == []
        log = open(st["log"]).read()
        assert "[llmctl] stopping the engine group" in log  # stopped by llmctl, gracefully
        assert read_state("hup") is None
    finally:
        proc.kill()
        st = read_state("hup")
        if st:
            kill_quietly(st.get("pgid"))


def test_restart_log_counts_consecutive_failures_and_all_restarts(
    tmp_path, fake_engine, tiny_model
):
    """The restart budget is of consecutive failures; the log used to put the total next to
    it ("restart 2 of at most 1")."""
    extra = "restart:\n  policy: on-failure\n  max_restarts: 1\n  backoff_initial: 0.1\n"
    p = slow_chat_profile(tmp_path, fake_engine, tiny_model, "flappy", extra)
    r = llmctl("serve", p, "--detach", "--no-smoke")
    assert r.returncode == 0, r.stderr
    try:
        for n in (1, 2):
            before = read_state("flappy")
            os.kill(before["engine_pid"], signal.SIGKILL)
            wait_until(
                lambda n=n: (
                    (st := read_state("flappy")) and st["restarts"] == n and st["phase"] == "ready"
                ),
                timeout=60,
                what=f"restart {n}",
            )
        log = llmctl("logs", "flappy", "-n", "400").stdout
        for m in re.finditer(r"restart (\d+) of at most (\d+)", log):
            assert int(m.group(1)) <= int(m.group(2)), m.group(0)
        assert "restart #1 in 0.1 s (1 of at most 1 consecutive failures; 1 restart(s)" in log
        assert "restart #2 in 0.1 s (1 of at most 1 consecutive failures; 2 restart(s)" in log
        assert "killed by SIGKILL" in log  # each crash after ready names its signal
    finally:
        st = read_state("flappy")
        assert llmctl("stop", "flappy").returncode == 0
        if st:
            assert group_left(st["pgid"]) == []


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
def test_killed_while_loading_says_oom_killer(profile_file, fake_engine, tiny_model, detach):
    name = "oomkilled-d" if detach else "oomkilled"
    p = profile_file(name, tiny_model, f"runtime:\n  executable: {fake_engine('killed')}\n")
    r = llmctl("serve", p, "--json", "--no-smoke", *(["--detach"] if detach else []))
    assert r.returncode == 1, r.stderr
    err = json_out(r)["error"]
    assert err["message"].startswith("the engine was killed by SIGKILL (status -9) while "), err
    assert "out of memory?" in err["hint"] and "dmesg" in err["hint"]
    assert err["details"][-1]["cause"] == "signal"
    assert err["exit_status"] == -9 and err["signal"] == "SIGKILL"
    assert err["log"].endswith(f"{name}.log") and os.path.isfile(err["log"])
    assert any("loading weights" in line for line in err["log_tail"])
    assert read_state(name) is None
    # Without --json: the hint line says it too.
    r = llmctl("serve", p, "--no-smoke", *(["--detach"] if detach else []))
    assert r.returncode == 1
    assert "killed by SIGKILL" in r.stderr and "hint: " in r.stderr and "dmesg" in r.stderr


def test_stop_of_a_name_never_served_is_an_error(tmp_path, fake_engine, tiny_model):
    """`stop` of a run that existed stays idempotent; a name llmctl never saw is a usage
    error with "did you mean" and what is running (the README's `stop qwen` left
    qwen2.5-1.5b-instruct running and said "not running", exit 0)."""
    r = llmctl("stop", "qwen", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    err = json_out(r)["error"]
    assert err["kind"] == "usage" and "never served a run named 'qwen'" in err["message"]
    assert "running: none" in err["hint"]
    name = "qwen2.5-1.5b-instruct"
    p = slow_chat_profile(tmp_path, fake_engine, tiny_model, name)
    assert llmctl("serve", p, "--detach", "--no-smoke").returncode == 0
    try:
        r = llmctl("stop", "qwen")
        assert r.returncode == 2
        assert f"did you mean {name}?" in r.stderr and f"running: {name}" in r.stderr
        assert read_state(name)["phase"] == "ready"  # nothing was stopped
        r = llmctl("stop", name, "--json")
        assert r.returncode == 0 and json_out(r)["stopped"][0]["stopped"] is True
        again = llmctl("stop", name, "--json")  # a run that existed: still idempotent
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["stopped"][0] == {
            "name": name,
            "stopped": False,
            "was": None,
            "note": "not running",
        }
        assert "not running" in llmctl("stop", name).stderr
    finally:
        llmctl("stop", "--all")


def test_serve_fails_the_gpu_check_doctor_fails(tmp_path, fake_engine, tiny_model):
    """Issue 19 item 9: with an nvidia-smi that cannot talk to the driver, doctor failed the
    GPU check while serve skipped it and started the engine, which died with a traceback.
    Now serve refuses before the start, with doctor's own words (exit 3)."""
    from tests.fakes import fake_nvidia_smi
    from tests.serve.conftest import llmctl_env

    said = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running."
    )
    broken = fake_nvidia_smi(tmp_path / "broken-bin", None, fails=said)
    env = llmctl_env(PATH=f"{broken}{os.pathsep}{os.environ['PATH']}")
    p = slow_chat_profile(tmp_path, fake_engine, tiny_model, "nodriver")
    doctor = llmctl("doctor", p, "--json", env=env)
    gpu = [c for c in json_out(doctor)["checks"] if c["check"] == "gpu"][0]
    assert gpu["level"] == "fail" and said in gpu["message"]
    for detach in (False, True):
        r = llmctl("serve", p, "--json", "--no-smoke", *(["--detach"] if detach else []), env=env)
        assert r.returncode == 3, r.stderr
        err = json_out(r)["error"]
        assert err["kind"] == "preflight" and said in err["message"]
        assert any(d["check"] == "gpu" and d["message"] == gpu["message"] for d in err["details"])
        assert "slow chat engine" not in r.stderr and "Traceback" not in r.stderr
        assert read_state("nodriver") is None
    # The same profile on a machine whose nvidia-smi works is served.
    r = llmctl("serve", p, "--detach", "--no-smoke")
    assert r.returncode == 0, r.stderr
    assert llmctl("stop", "nodriver").returncode == 0
