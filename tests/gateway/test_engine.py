"""The real engine seam: a llama.cpp engine served through supervise.serve() in a thread,
with the gateway's overrides; a port taken before the engine binds it is replaced."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket

import httpx
import pytest

from llmdeploy_cli.gateway.config import load_gateway
from llmdeploy_cli.gateway.engine import ServedEngine
from tests.e2e import wait_gone
from tests.gateway.conftest import llama_profile, write_gateway

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="needs xllamacpp"),
]


def test_a_taken_port_is_replaced_and_the_engine_key_is_enforced(tmp_path, tiny_gguf, monkeypatch):
    import shutil

    gguf = tmp_path / "own.gguf"
    shutil.copy(tiny_gguf, gguf)
    llama_profile(tmp_path / "profiles", "a", gguf)
    monkeypatch.setenv("LLMCTL_STATE_DIR", str(tmp_path / "state"))
    gw = load_gateway(write_gateway(tmp_path, "name: t\nprofiles: [profiles/a.yml]\n"))
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    taken = held.getsockname()[1]
    from llmdeploy_cli import netutil

    real = netutil.free_port
    ports = iter([taken])
    monkeypatch.setattr(netutil, "free_port", lambda host="127.0.0.1": next(ports, None) or real())

    async def go():
        eng = ServedEngine(gw.models["a"], "t", dict(os.environ))
        assert f":{taken}/" in eng.base_url
        eng.start()
        try:
            await eng.wait_ready()
            assert f":{taken}/" not in eng.base_url and eng.alive()
            r = httpx.get(eng.base_url + "/models", timeout=5)
            assert r.status_code == 401  # the gateway's random key guards the engine
            r = httpx.get(
                eng.base_url + "/models",
                headers={"Authorization": f"Bearer {eng.api_key}"},
                timeout=5,
            )
            assert r.status_code == 200
        finally:
            await eng.stop()
        assert not eng.alive()

    try:
        asyncio.run(go())
    finally:
        held.close()
    assert wait_gone(str(gguf)) == []
