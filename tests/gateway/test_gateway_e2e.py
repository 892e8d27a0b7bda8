"""The gateway with real engines: llama.cpp (the xllamacpp wheel) serving the tiny GGUF
model on the CPU, driven with the openai SDK through `llmctl gateway serve`. Assertions
are on process lists and ports as well as on HTTP answers."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e import LLMCTL, processes_with, run, wait_gone
from tests.fakes import free_port
from tests.gateway.conftest import llama_profile

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("openai") is None,
        reason="needs the xllamacpp wheel and the openai SDK",
    ),
]

KEY = "sk-gateway-test-1234"
MSG = [{"role": "user", "content": "hi"}]


def port_free(port: int) -> bool:
    from llmdeploy_cli.netutil import port_in_use

    return not port_in_use("127.0.0.1", port)


class Gw:
    """One `llmctl gateway serve` process, its folder, and an openai client on it."""

    def __init__(self, tmp_path: Path, gguf: Path, names, body: str, key: str | None = None):
        import openai

        self.dir = tmp_path
        self.gguf = tmp_path / "models" / "tiny.gguf"  # a path only this test's engines use
        self.gguf.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(gguf, self.gguf)
        for n in names:
            llama_profile(tmp_path / "profiles", n, self.gguf)
        self.port = free_port()
        self.file = tmp_path / "gw.yml"
        self.key = key
        head = f"name: gwt\nlisten: {{host: 127.0.0.1, port: {self.port}}}\n"
        if key:
            head += "api_key_env: GWT_KEY\n"
        self.file.write_text(head + textwrap.dedent(body))
        self.env = {**os.environ, "LLMCTL_STATE_DIR": str(tmp_path / "state"), "GWT_KEY": key or ""}
        self.env.pop("LLMCTL_DEBUG", None)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key=key or "none", max_retries=0)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [LLMCTL, "gateway", "serve", str(self.file)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line + self.proc.stderr.read()
        return self

    def engines(self) -> list[int]:
        return processes_with(str(self.gguf))

    def engine_of(self, name: str) -> list[int]:
        return [p for p in self.engines() if _has_alias(p, name)]

    def chat(self, model: str, **kw):
        return self.client.chat.completions.create(model=model, messages=MSG, max_tokens=4, **kw)

    def state(self, model: str) -> str:
        doc = httpx.get(self.url + "/v1/models", headers=self._auth()).json()
        return next(m["llmctl"]["state"] for m in doc["data"] if m["id"] == model)

    def _auth(self):
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        assert wait_gone(str(self.gguf)) == []


def _has_alias(pid: int, name: str) -> bool:
    import psutil

    try:
        cmd = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "--alias" in cmd and cmd[cmd.index("--alias") + 1] == name


@pytest.fixture
def gateway(tmp_path, tiny_gguf):
    made = []

    def make(names, body, key=None):
        g = Gw(tmp_path, tiny_gguf, names, body, key)
        made.append(g)
        return g.start()

    yield make
    for g in made:
        g.stop()


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_on_demand_single_start_auth_models_and_stop(gateway):
    import openai

    g = gateway(
        ["a"],
        """\
        profiles: [profiles/a.yml]
        models: {a: {aliases: [gpt-4o-mini]}}
        """,
        key=KEY,
    )
    assert g.engines() == [] and g.state("a") == "stopped"
    results, errors = [], []

    def one():
        try:
            results.append(g.chat("gpt-4o-mini").model)
        except Exception as e:  # noqa: BLE001 - collected and asserted on
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == ["a"] * 16  # the engine's own name, bytes unchanged
    assert len(g.engine_of("a")) == 1 and g.state("gpt-4o-mini") == "ready"
    with pytest.raises(openai.NotFoundError) as e:
        g.chat("nope")
    assert "gpt-4o-mini" in str(e.value)
    bad = openai.OpenAI(base_url=g.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="a", messages=MSG)
    assert httpx.get(g.url + "/health").status_code == 200  # no key needed
    r = httpx.post(g.url + "/v1/images/generations", json={"model": "a"}, headers=g._auth())
    assert r.status_code == 404 and "does not proxy" in r.json()["error"]["message"]
    metrics = httpx.get(g.url + "/metrics", headers=g._auth()).text
    assert 'llmctl_gateway_starts_total{model="a",result="ok"} 1.0' in metrics
    stream = g.chat("a", stream=True)
    assert [c for c in stream]
    out = run("stop", "gwt", env=g.env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert g.proc.wait(30) == 0 or g.proc.returncode in (0, 143)
    assert wait_gone(str(g.gguf)) == [] and port_free(g.port)


def test_ttl_unload_and_eviction_by_the_memory_budget(gateway):
    g = gateway(
        ["a", "b"],
        """\
        profiles: ["profiles/*.yml"]
        defaults: {min_resident: 0}
        models: {a: {need: 1GiB, ttl: 1}, b: {need: 1GiB}}
        memory: {host_ram: 1536MiB, gpus: []}
        """,
    )
    g.chat("a")
    (pid_a,) = g.engine_of("a")
    g.chat("b")  # only one fits: a is evicted
    assert wait_for(lambda: g.engine_of("a") == [])
    assert len(g.engine_of("b")) == 1 and g.state("a") == "stopped"
    g.chat("a")  # and back: b is evicted
    assert wait_for(lambda: g.engine_of("b") == []) and len(g.engine_of("a")) == 1
    assert wait_for(lambda: g.engine_of("a") == [], timeout=5)  # ttl 1 s
    metrics = httpx.get(g.url + "/metrics").text
    assert 'llmctl_gateway_ttl_unloads_total{model="a"} 1.0' in metrics
    assert 'llmctl_gateway_evictions_total{for_model="b",model="a"} 1.0' in metrics


def test_kill_9_of_an_engine_gives_502_then_restarts(gateway):
    import openai

    g = gateway(["a"], "profiles: [profiles/a.yml]\n")
    g.chat("a")
    (pid,) = g.engine_of("a")
    os.kill(pid, signal.SIGKILL)
    # the next request either meets the dead engine (502 with the reason) or, once the
    # fleet saw the exit, restarts it
    try:
        g.chat("a")
    except openai.InternalServerError as e:
        assert e.status_code == 502 and "engine" in str(e)
    assert g.chat("a").model == "a"
    (new,) = g.engine_of("a")
    assert new != pid
    # llmctl stop NAME/PROFILE unloads one model and leaves the gateway up
    out = run("stop", "gwt/a", env=g.env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert wait_gone(str(g.gguf)) == [] and g.state("a") == "stopped"
    assert httpx.get(g.url + "/health").status_code == 200


def test_queue_timeout_max_queue_and_failed_start(gateway, tmp_path):
    import openai

    broken = llama_profile(tmp_path / "profiles", "broken", tmp_path / "missing.gguf")
    assert broken.exists()
    g = gateway(
        ["a"],
        """\
        profiles: ["profiles/*.yml"]
        models: {a: {queue_timeout: 0.05, max_queue: 1}}
        """,
    )
    with pytest.raises(openai.InternalServerError) as e:
        g.chat("a")  # a cold start takes longer than 50 ms
    assert e.value.status_code == 503 and e.value.response.headers.get("Retry-After")
    assert wait_for(lambda: g.state("a") in ("ready", "stopped"))
    with pytest.raises(openai.APIStatusError) as e:
        g.chat("broken")
    assert e.value.status_code == 502 and "missing.gguf" in str(e.value)
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:  # within the backoff: no new start
        g.chat("broken")
    assert time.monotonic() - t0 < 0.5 and e.value.response.headers.get("Retry-After")


def test_reload_adds_and_removes_and_a_bad_file_keeps_the_set(gateway, tmp_path):
    import openai

    g = gateway(["a", "b"], "profiles: [profiles/a.yml]\n")
    g.chat("a")
    good = g.file.read_text().replace("profiles/a.yml", "profiles/b.yml")
    g.file.write_text(good)
    out = run("gateway", "reload", "gwt", "--json", env=g.env)
    assert out.returncode == 0, out.stderr + out.stdout
    assert wait_for(lambda: g.engine_of("a") == [])
    assert g.chat("b").model == "b"
    with pytest.raises(openai.NotFoundError):
        g.chat("a")
    g.file.write_text(good + "bogus_key: 1\n")
    out = run("gateway", "reload", "gwt", env=g.env)
    assert out.returncode == 2 and "unknown key" in out.stderr
    assert g.chat("b").model == "b"


def test_sigkill_of_the_gateway_leaves_no_engine(gateway):
    g = gateway(["a"], "profiles: [profiles/a.yml]\n")
    g.chat("a")
    assert len(g.engine_of("a")) == 1
    g.proc.kill()
    g.proc.wait(10)
    assert wait_gone(str(g.gguf), timeout=20) == []


def test_shutdown_lets_an_in_flight_request_finish(gateway):
    g = gateway(["a"], "profiles: [profiles/a.yml]\nshutdown_grace: 20\n")
    g.chat("a")
    done = {}

    def long():
        r = g.client.chat.completions.create(model="a", messages=MSG, max_tokens=200)
        done["n"] = r.usage.completion_tokens if r.usage else -1

    t = threading.Thread(target=long)
    t.start()
    time.sleep(0.05)
    g.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert done.get("n", 0) != 0
    assert g.proc.wait(30) in (0, 143)
    assert wait_gone(str(g.gguf)) == [] and port_free(g.port)


def test_detach_then_stop_leaves_nothing(tmp_path, tiny_gguf):
    g = Gw(tmp_path, tiny_gguf, ["a"], "profiles: [profiles/a.yml]\n")
    out = run("gateway", "serve", g.file, "--detach", "--json", env=g.env, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    doc = json.loads(out.stdout)
    assert doc["url"] == g.url and doc["pid"]
    try:
        assert g.chat("a").model == "a" and len(g.engine_of("a")) == 1
        status = run("status", "--json", env=g.env)
        names = [r["name"] for r in json.loads(status.stdout)["runs"]]
        assert sorted(names) == ["gwt", "gwt/a"]
        human = run("status", env=g.env).stdout
        assert "gwt/a " in human
        state = Path(g.env["LLMCTL_STATE_DIR"])
        assert (state / "logs" / "gwt" / "a.log").exists()  # in the gateway's folder
        assert sorted(p.name for p in (state / "runs").glob("*.json")) == [
            "gwt+a.json",
            "gwt.gateway.json",
            "gwt.json",
        ]
        assert run("logs", "gwt/a", env=g.env).returncode == 0
        old = run("stop", "gwt.a", env=g.env)  # the old spelling: refused, gateway left up
        assert old.returncode == 2 and "llmctl stop gwt/a" in old.stderr
        assert g.chat("a").model == "a"
    finally:
        out = run("stop", "gwt", env=g.env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert wait_gone(str(g.gguf)) == [] and port_free(g.port)
    import psutil

    assert not psutil.pid_exists(doc["pid"]) or psutil.Process(doc["pid"]).status() == "zombie"
