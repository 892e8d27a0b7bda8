"""Two tiny transformers chat models and an Infinity embedder behind one gateway port,
driven with the openai SDK: each request reaches the right engine, and stop leaves none."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest

from tests.backends.infinity.conftest import infinity_env, minilm_dir  # noqa: F401 - fixtures
from tests.e2e import processes_with, run, wait_gone
from tests.gateway.test_gateway_e2e import MSG, free_port, port_free

pytestmark = pytest.mark.slow


def test_two_transformers_models_and_an_embedder_behind_one_port(
    tmp_path,
    tiny_model,
    infinity_env,  # noqa: F811
    minilm_dir,  # noqa: F811
):
    import openai

    models = tmp_path / "models"
    models.mkdir()
    for name in ("chat-x", "chat-y"):
        (models / name).symlink_to(tiny_model, target_is_directory=True)
        (tmp_path / f"{name}.yml").write_text(
            textwrap.dedent(
                f"""\
                name: {name}
                backend: transformers
                model: {{source: {models / name}, dtype: float32}}
                resources: {{device: cpu}}
                runtime: {{venv: {sys.prefix}}}
                """
            )
            # an engine's own idle unload would free memory behind the gateway's back:
            # transformers serve ignores --model-timeout for the model on its command line
            + ('extra_args: ["--model-timeout", "1"]\n' if name == "chat-x" else "")
        )
    (tmp_path / "embed.yml").write_text(
        textwrap.dedent(
            f"""\
            name: embed
            backend: infinity
            model: {{source: {minilm_dir}, served_name: minilm, task: embedding}}
            resources: {{device: cpu}}
            runtime: {{venv: {infinity_env.venv}}}
            offline: true
            options: {{engine: torch, model_warmup: false}}
            """
        )
    )
    port = free_port()
    gw = tmp_path / "gw.yml"
    gw.write_text(
        f"name: mix\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
        "profiles: [chat-x.yml, chat-y.yml, embed.yml]\n"
        "models: {embed: {aliases: [text-embedding-3-small]}}\n"
    )
    env = {**os.environ, **infinity_env.environ, "LLMCTL_STATE_DIR": str(tmp_path / "state")}
    r = run("gateway", "serve", gw, "--detach", "--json", env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        for name in ("chat-x", "chat-y"):
            out = c.chat.completions.create(model=name, messages=MSG, max_tokens=3)
            assert out.choices and out.choices[0].message is not None
        e = c.embeddings.create(model="text-embedding-3-small", input=["gateway"])
        assert len(e.data[0].embedding) == 384
        # one engine process per model, each on its own port, all children of the gateway
        assert len(processes_with(str(models / "chat-x"))) >= 1
        assert len(processes_with(str(models / "chat-y"))) >= 1
        assert len(processes_with(str(minilm_dir))) >= 1
        import psutil

        (serve_x,) = [p for p in processes_with(str(models / "chat-x")) if _is_serve(p)]
        family = {serve_x, *(ch.pid for ch in psutil.Process(serve_x).children(recursive=True))}
        assert len(family) >= 2  # the server and the model process it spawned
        time.sleep(2.5)  # past --model-timeout 1: nothing of chat-x's engine stops
        assert all(psutil.pid_exists(p) for p in family), family
        out = c.chat.completions.create(model="chat-x", messages=MSG, max_tokens=3)
        assert out.choices
        states = {m.id: m.model_extra["llmctl"]["state"] for m in c.models.list().data}
        assert states == dict.fromkeys(
            ["chat-x", "chat-y", "minilm", "text-embedding-3-small"], "ready"
        )
    finally:
        out = run("stop", "mix", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    for text in (str(models / "chat-x"), str(models / "chat-y"), str(minilm_dir)):
        assert wait_gone(text, timeout=30) == []
    assert port_free(port)


def _is_serve(pid: int) -> bool:
    import psutil

    try:
        return "serve" in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
