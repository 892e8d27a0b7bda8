"""`supervise.serve.serve` as a library call, the way the gateway uses it: several sessions
in one process, each in its own thread with its own stop flag, events through a callback,
no signal handler touched. Real engines: the tiny GGUF in llama.cpp's own server (the
xllamacpp wheel, ready in about a second).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
from pathlib import Path

import pytest

from llmdeploy_cli.errors import UsageError
from tests.fakes import llamacpp_profile, tiny_gguf_file
from tests.serve.conftest import alive, group_left, read_state, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None,
        reason="the xllamacpp wheel is not installed (pip install xllamacpp)",
    ),
]


@pytest.fixture(scope="module")
def gguf(tiny_model, tmp_path_factory) -> Path:
    return tiny_gguf_file(tiny_model, tmp_path_factory, "gguf")


def _resolved(tmp_path, gguf, name, smoke_extra=""):
    from llmdeploy_cli.resolve import resolve

    p = llamacpp_profile(
        tmp_path,
        name,
        gguf,
        served_name="tiny",
        server="port: auto",
        max_num_seqs=1,
        smoke_max_tokens=4,
        extra=smoke_extra,
    )
    return resolve(p), p


class _Session(threading.Thread):
    def __init__(self, resolved, path, **kw):
        super().__init__(daemon=True)
        self.resolved, self.path, self.kw = resolved, path, kw
        self.stop = threading.Event()
        self.events = []
        self.served = None
        self.error = None
        self.serving = threading.Event()

    def on_event(self, ev):
        self.events.append(ev)
        if ev.kind == "serving":
            self.serving.set()

    def run(self):
        from llmdeploy_cli.supervise.serve import FOREGROUND, serve

        try:
            self.served = serve(
                self.resolved,
                FOREGROUND,
                self.on_event,
                profile_path=self.path,
                stop=self.stop,
                **self.kw,
            )
        except BaseException as e:  # noqa: BLE001 - the test asserts on it
            self.error = e
        finally:
            self.serving.set()


def test_two_sessions_in_threads_of_one_process(tmp_path, gguf):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    a = _Session(*_resolved(tmp_path, gguf, "lib-a"), smoke=False, preflight=False)
    b = _Session(*_resolved(tmp_path, gguf, "lib-b"))
    a.start()
    b.start()
    try:
        for s in (a, b):
            assert s.serving.wait(120), f"{s.resolved.profile.name} not served"
            assert s.error is None, s.error
        kinds_a = [e.kind for e in a.events]
        kinds_b = [e.kind for e in b.events]
        assert "smoke" not in kinds_a and kinds_a.index("ready") < kinds_a.index("serving")
        assert kinds_b.index("ready") < kinds_b.index("smoke") < kinds_b.index("serving")
        doc_a = next(e.data for e in a.events if e.kind == "serving")
        doc_b = next(e.data for e in b.events if e.kind == "serving")
        assert doc_a["pid"] == doc_b["pid"] == os.getpid()
        assert doc_a["base_url"] != doc_b["base_url"]
        assert doc_b["smoke"]["ok"] is True and "smoke" not in doc_a
        st_a, st_b = read_state("lib-a"), read_state("lib-b")
        assert st_a["phase"] == st_b["phase"] == "ready"
        assert alive(st_a["engine_pid"]) and alive(st_b["engine_pid"])
        # The library never touches signal handlers (only the CLI installs them).
        assert {s: signal.getsignal(s) for s in handlers} == handlers

        a.stop.set()  # unload one model; the other keeps serving
        a.join(30)
        assert not a.is_alive() and a.error is None
        assert a.served.stopped and a.served.signum is None and a.served.exit_code == 0
        assert a.events[-1].kind == "stopped"
        wait_until(lambda: not group_left(st_a["pgid"]), timeout=10, what="a's group to go")
        assert read_state("lib-a") is None
        assert alive(st_b["engine_pid"]) and read_state("lib-b")["phase"] == "ready"
    finally:
        for s in (a, b):
            s.stop.set()
        for s in (a, b):
            s.join(30)
    assert b.served.stopped and b.error is None
    assert group_left(st_b["pgid"]) == []


def test_a_failed_smoke_stops_the_engine_and_raises(tmp_path, gguf):
    from llmdeploy_cli.errors import ExitCode

    r, p = _resolved(tmp_path, gguf, "lib-smoke", "  expect:\n    regex: '^never this$'\n")
    s = _Session(r, p, preflight=False)
    s.start()
    s.join(120)
    assert s.error is not None and int(s.error.code) == int(ExitCode.ASSERTION), s.error
    kinds = [e.kind for e in s.events]
    assert "serving" not in kinds and kinds[-1] == "stopped"
    assert s.events[-1].message == "the smoke failed"
    assert read_state("lib-smoke") is None


def test_bad_mode_and_detach_without_file_are_usage_errors(tmp_path, gguf):
    from llmdeploy_cli.supervise.serve import DETACH, serve

    r, _ = _resolved(tmp_path, gguf, "lib-bad")
    with pytest.raises(UsageError):
        serve(r, "background")
    with pytest.raises(UsageError):
        serve(r, DETACH)
