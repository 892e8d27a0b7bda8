"""The parts of serve that need no engine: log sink, state files, diagnoses, preflight,
readiness deadlines, group stop."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmdeploy_cli.errors import NotReadyError, PreflightError
from llmdeploy_cli.supervise import state
from llmdeploy_cli.supervise.diagnose import diagnose
from llmdeploy_cli.supervise.logfile import LogSink, follow, read_tail
from tests.fakes import listening_port


@pytest.fixture
def vllm_profile():
    from llmdeploy_cli import registry
    from llmdeploy_cli.profile import Profile

    p = Profile.model_validate(
        {
            "name": "p",
            "backend": "vllm",
            "model": {"source": "org/m"},
            "resources": {"gpu_memory_utilization": 0.92, "max_num_seqs": 256},
        }
    )
    return p, registry.get("vllm")


# -- log sink -----------------------------------------------------------------------------


def test_log_scrubs_rotates_and_keeps_the_tail(tmp_path):
    seen = []
    log = LogSink(
        tmp_path / "logs" / "x.log", secrets={"s3cr3t-value"}, max_bytes=400, echo=seen.append
    )
    r, w = os.pipe()
    log.attach(os.fdopen(r, "rb"))
    with os.fdopen(w, "wb") as f:
        f.write(b"token=s3cr3t-value here\n")
        f.write(b"progress 10%\rprogress 50%\rprogress 100%\n")
        for i in range(80):
            f.write(f"line {i:03d} \x1b[32mgreen\x1b[0m\n".encode())
        f.write(b"no newline at the end")
    log.join(2)
    log.close()
    assert log.tail(1) == ["no newline at the end"]
    assert "line 079 green" in log.tail(5)
    assert seen[0] == "token=*** here"
    assert seen[1:4] == ["progress 10%", "progress 50%", "progress 100%"]
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["x.log", "x.log.1", "x.log.2"]  # rotated, two backups kept
    text = "".join((tmp_path / "logs" / n).read_text() for n in files)
    assert "s3cr3t" not in text
    assert all((tmp_path / "logs" / n).stat().st_size <= 400 for n in files)
    assert stat.S_IMODE((tmp_path / "logs" / "x.log").stat().st_mode) == 0o600
    assert read_tail(tmp_path / "logs" / "x.log", 1) == ["no newline at the end"]


def test_follow_survives_rotation(tmp_path):
    path = tmp_path / "f.log"
    path.write_text("old\n")
    got, done = [], threading.Event()

    def reader():
        for line in follow(path, stop=done.is_set, poll_s=0.01):
            got.append(line)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    with open(path, "a") as f:
        f.write("one\n")
    time.sleep(0.1)
    os.replace(path, tmp_path / "f.log.1")
    path.write_text("two\n")
    time.sleep(0.2)
    done.set()
    t.join(2)
    assert got == ["one", "two"]


# -- state --------------------------------------------------------------------------------


def test_state_files_are_private_and_atomic():
    st = state.RunState(
        name="s", backend="b", profile=None, profile_hash=None, base_url="u", model="m",
        port=1, log="l",
    )  # fmt: skip
    state.save(st)
    p = state.state_path("s")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    assert state.load("s").as_dict() == st.as_dict()
    assert not [x for x in p.parent.iterdir() if x.name.startswith(".")]  # no temp left
    p.write_text("{torn")
    assert state.load("s") is None


def test_run_lock_is_exclusive_and_dies_with_its_holder():
    lock = state.RunLock("l")
    assert lock.acquire()
    assert state.is_locked("l")
    assert not state.RunLock("l").acquire()
    lock.release()
    assert not state.is_locked("l")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from llmdeploy_cli.supervise.state import RunLock;"
            "assert RunLock('l').acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert state.is_locked("l")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert not state.is_locked("l")  # no stale lock after a kill -9
    finally:
        holder.kill()


# -- diagnoses ----------------------------------------------------------------------------


def test_oom_diagnosis_computes_values(vllm_profile):
    profile, backend = vllm_profile
    (d,) = diagnose(["torch.OutOfMemoryError: CUDA out of memory."], profile, backend)
    assert d.cause == "oom"
    assert "gpu_memory_utilization from 0.92 to 0.82" in d.fix
    assert "set resources.max_model_len: 8192" in d.fix
    assert "max_num_seqs from 256 to 128" in d.fix


def test_oom_diagnosis_only_suggests_keys_the_backend_has():
    from llmdeploy_cli import registry
    from llmdeploy_cli.profile import Profile

    p = Profile.model_validate({"name": "p", "backend": "transformers", "model": {"source": "x"}})
    (d,) = diagnose(["CUDA out of memory"], p, registry.get("transformers"))
    assert "gpu_memory_utilization" not in d.fix and "smaller model" in d.fix


def test_module_diagnosis_names_package_and_env(vllm_profile, tmp_path):
    profile, backend = vllm_profile
    profile.runtime.venv = str(tmp_path / "venv")
    (d,) = diagnose(["ModuleNotFoundError: No module named 'flash_attn'"], profile, backend)
    assert d.cause == "module"
    assert f"{tmp_path}/venv/bin/python -m pip install flash-attn" in d.fix


def test_port_diagnosis_names_the_holder():
    with listening_port() as port:
        (d,) = diagnose(["OSError: [Errno 98] Address already in use"], port=port)
        assert f"pid {os.getpid()}" in d.message


def test_driver_and_missing_files_diagnoses(tmp_path):
    from llmdeploy_cli.profile import Profile

    causes = {
        d.cause
        for d in diagnose(
            [
                "RuntimeError: The NVIDIA driver on your system is too old",
                f"OSError: {tmp_path} does not appear to have a file named config.json",
            ],
            Profile.model_validate(
                {"name": "p", "backend": "transformers", "model": {"source": str(tmp_path)}}
            ),
        )
    }
    assert causes == {"cuda-driver", "model-files"}
    assert diagnose(["all good"]) == []


# -- preflight ----------------------------------------------------------------------------


def test_preflight_api_key_offline_and_running(tmp_path, monkeypatch):
    from llmdeploy_cli import preflight
    from llmdeploy_cli.resolve import resolve

    p = tmp_path / "k.yml"
    p.write_text(
        "name: k\nbackend: vllm\nmodel:\n  source: org/m\noffline: true\n"
        "server:\n  api_key_env: K_TEST_KEY\nruntime:\n  executable: /bin/true\n"
        "  engine_version: '0.33.0'\n"
    )
    monkeypatch.delenv("K_TEST_KEY", raising=False)
    r = resolve(p)
    found = {x.check: x for x in preflight.problems(r)}
    assert found["api_key"].level == "fail" and "export K_TEST_KEY" in found["api_key"].fix
    assert found["offline"].level == "warn"  # a hub id while offline: must be cached
    with pytest.raises(PreflightError) as e:
        preflight.check(r)
    assert e.value.code == 3
    monkeypatch.setenv("K_TEST_KEY", "abcd1234")
    lock = state.RunLock("k")
    assert lock.acquire()
    try:
        with pytest.raises(PreflightError, match="already being served"):
            preflight.check(resolve(p))
    finally:
        lock.release()
    # An offline profile whose env undoes an offline variable fails, naming it.
    p2 = tmp_path / "k2.yml"
    p2.write_text(
        p.read_text().replace("name: k\n", "name: k2\n") + "env:\n  HF_HUB_OFFLINE: '0'\n"
    )
    bad = [x for x in preflight.problems(resolve(p2)) if x.level == "fail"]
    assert any("HF_HUB_OFFLINE" in x.message for x in bad), bad
    assert preflight.check(resolve(p)) == [
        x for x in preflight.problems(resolve(p)) if x.level == "warn"
    ]


# -- readiness ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        code = 200 if self.server.healthy else 503
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()


def test_readiness_polls_fast_once_the_port_accepts(monkeypatch):
    from llmdeploy_cli import readiness, registry
    from llmdeploy_cli.backend import Endpoint
    from llmdeploy_cli.profile import Profile

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.healthy = False
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ep = Endpoint(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        health_url=f"http://127.0.0.1:{port}/health",
    )
    prof = Profile.model_validate(
        {
            "name": "p",
            "backend": "transformers",
            "model": {"source": "m"},
            "health": {"require_completion": False},
        }
    )
    be = registry.get("transformers")
    became = []

    def flip():
        time.sleep(0.3)
        became.append(time.monotonic())
        srv.healthy = True

    threading.Thread(target=flip).start()
    try:
        res = readiness.wait_ready(be, ep, prof, alive=lambda: None)
        delay = time.monotonic() - became[0]
        assert delay < 0.2, f"health flipped {delay * 1000:.0f} ms before it was noticed"
        assert set(res.timings) == {"port", "health"}
        srv.healthy = False
        prof.health.load_timeout = 0.3
        with pytest.raises(NotReadyError, match="load_timeout|health phase"):
            readiness.wait_ready(be, ep, prof, alive=lambda: None)
        with pytest.raises(readiness.Crashed):
            readiness.wait_ready(be, ep, prof, alive=lambda: 3)
    finally:
        srv.shutdown()


def test_stop_group_sigkills_after_grace(tmp_path):
    from llmdeploy_cli.supervise.process import group_members, spawn

    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', "
        "'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print('up', flush=True); time.sleep(60)\n"
    )
    log = LogSink(tmp_path / "s.log")
    child = spawn([sys.executable, str(script)], dict(os.environ), log=log)
    deadline = time.monotonic() + 20
    while len(group_members(child.pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(child.pgid)) == 2
    took = child.stop(signal.SIGTERM, grace_s=0.5)
    assert 0.5 <= took < 0.5 + 0.6
    assert group_members(child.pgid) == []
    assert child.poll() == -signal.SIGKILL


def test_known_names_are_records_and_kept_logs():
    """What `stop` needs to tell a run that existed from a name it never saw."""
    from llmdeploy_cli.supervise import control
    from llmdeploy_cli.supervise import state as st_mod

    assert control.known_names() == []
    st_mod.log_path("old-run").write_text("x\n")  # stopped long ago: its log is kept
    (st_mod.logs_dir() / "old-run.supervisor.log").write_text("")
    (st_mod.logs_dir() / "old-run.log.1").write_text("")  # a rotated log adds no name
    st = st_mod.RunState(
        name="qwen2.5-1.5b-instruct", backend="vllm", profile=None, profile_hash=None,
        base_url="http://127.0.0.1:8000/v1", model="m", port=8000, log="",
    )  # fmt: skip
    st_mod.save(st)
    assert control.known_names() == ["old-run", "qwen2.5-1.5b-instruct"]
    assert control.similar_names("qwen") == ["qwen2.5-1.5b-instruct"]  # the README's case
    assert control.similar_names("qwen2.5-instruct") == ["qwen2.5-1.5b-instruct"]
    assert control.similar_names("old-rnu") == ["old-run"]
    assert control.similar_names("mistral") == []
