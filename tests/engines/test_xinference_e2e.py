"""Xinference end to end on CPU: `llmctl engine install`, then `llmctl serve` of the tiny model.

The engine env is installed once with `llmctl engine install xinference --version 4.1.0
--device cpu` into $LLMCTL_ENGINES_DIR (default ~/.cache/llmctl-ci/engines, which CI
caches by engine and version): the first run takes a few minutes, later runs reuse it.
Set LLMCTL_NO_ENGINE_INSTALL=1 to skip these tests instead of installing.

The tiny model is a Llama; Xinference launches a local directory under a built-in family
name, and `llama-2-chat` (LlamaForCausalLM, pytorch, 7B spec, chat) is a family whose
registry entry the transformers engine accepts: no custom registration is needed (the
family only supplies the chat template and abilities; `model_path` replaces the download).
Readiness: /status, then the launch (POST /v1/models), then the uid in /v1/models, then
one completion. Stop: every process of both steps (server, its cluster and the model's
worker) is gone. The model answers gibberish: only protocol facts are asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import free_port
from tests.serve.conftest import json_out, kill_quietly, llmctl, llmctl_env, read_state

pytestmark = pytest.mark.slow

VERSION = "4.1.0"
API_KEY = "sk-llmctl-e2e-0123456789abcdef"


def engines_dir() -> Path:
    from tests.conftest import CI_ENGINES_DIR  # $LLMCTL_ENGINES_DIR as the run was started

    return Path(CI_ENGINES_DIR or "~/.cache/llmctl-ci/engines").expanduser()


@pytest.fixture(scope="module")
def xinference_env() -> Path:
    """The installed env (installed here on first use; reused from the cache after)."""
    if os.environ.get("LLMCTL_NO_ENGINE_INSTALL") == "1":
        pytest.skip("LLMCTL_NO_ENGINE_INSTALL=1: not installing xinference")
    env = llmctl_env(LLMCTL_ENGINES_DIR=engines_dir())
    t0 = time.monotonic()
    r = llmctl(
        "engine", "install", "xinference", "--version", VERSION, "--device", "cpu", "--json",
        env=env, timeout=1200,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout
    doc = json_out(r)
    took = time.monotonic() - t0
    how = "cached" if doc["already_installed"] else f"installed in {took:.0f} s"
    print(f"\nxinference {VERSION} env: {doc['path']} ({how})")
    assert doc["version"] == VERSION and doc["device"] == "cpu"
    return Path(doc["path"])


def profile(tmp_path: Path, model: Path, name: str, extra_options: str = "", server: str = ""):
    p = tmp_path / f"{name}.yml"
    p.write_text(
        f"""name: {name}
backend: xinference
runtime:
  venv: engine:xinference@{VERSION}
model:
  source: {model}
  served_name: tiny-{name}
offline: true
server:
  host: 127.0.0.1
  port: {free_port()}
{server}resources:
  device: cpu
hub:
  source: huggingface
env:
  XINFERENCE_ENABLE_VIRTUAL_ENV: "0"
options:
  model_name: llama-2-chat
  model_engine: transformers
  model_format: pytorch
  model_size_in_billions: 7
{extra_options}health:
  require_completion: true
smoke:
  max_tokens: 4
"""
    )
    return p


def all_processes(pid: int) -> list:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def gone(procs: list) -> list:
    import psutil

    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


def check_smoke(r) -> None:
    # Xinference 4.1 ends a stream with a second, empty finish chunk: the smoke accepts it
    # with a warning (llmdeploy_cli/smoke.py), so the smoke must pass outright.
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    doc = json_out(r)
    assert doc["smoke"]["ok"] is True, doc


# Xinference's actor pools (xoscar) pick their internal ports by probing for a free one and
# bind them later: another of its own processes can take the port in between, and the
# engine exits with "error while attempting to bind" from xoscar's socket server (seen once
# in CI, on a port llmctl never chose). That race is Xinference's: one more start, and only
# for that trace, keeps it from failing these tests; anything else fails at once.
XOSCAR_PORT_RACE = ("xoscar/backends/communication/socket.py", "address already in use")


def serve_detached(prof: Path, env: dict):
    for attempt in (1, 2):
        r = llmctl(
            "serve", prof, "--detach", "--json", "--timeout", "600",
            env=env, timeout=660,
        )  # fmt: skip
        out = r.stdout + r.stderr
        if r.returncode == 0 or attempt == 2 or not all(m in out for m in XOSCAR_PORT_RACE):
            return r
        print(f"\n{prof.stem}: Xinference's internal port race (xoscar); starting once more")
    return r


def serve_smoke_stop(
    prof: Path,
    name: str,
    state_dir: Path,
    env: dict,
    key,
    home: Path,
    api_key=None,
    served: str | None = None,
):
    import httpx

    served = served or f"tiny-{name}"

    t0 = time.monotonic()
    r = serve_detached(prof, env)
    took = time.monotonic() - t0
    st = read_state(name, state_dir)
    try:
        assert r.returncode == 0, r.stderr[-4000:] + r.stdout[-4000:]
        doc = json_out(r)
        print(f"\n{name}: ready in {took:.1f} s")
        assert doc["model"] == served
        base = doc["base_url"]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        listed = httpx.get(f"{base}/models", headers=headers)
        assert listed.status_code == 200, listed.text
        assert served in [m["id"] for m in listed.json()["data"]]
        if key:
            anon = httpx.get(f"{base}/models")
            assert anon.status_code in (401, 403), anon.text
        # XINFERENCE_HOME is where the profile says; nothing was downloaded into it
        assert home.is_dir()
        cache = home / "cache"
        assert not cache.exists() or not any(cache.rglob("*.safetensors"))
        check_smoke(llmctl("smoke", prof, "--json", env=env, timeout=180))
        if api_key:
            # what clients use: an API key may list and query the model, never launch
            listed = httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {api_key}"})
            assert served in [m["id"] for m in listed.json()["data"]]
            smoke_key = llmctl(
                "smoke", "--url", base, "--model", served, "--api-key-env", "XI_E2E_KEY",
                "--json", env=env, timeout=180,
            )  # fmt: skip
            check_smoke(smoke_key)
        st = read_state(name, state_dir)
        procs = all_processes(st["engine_pid"])
        assert len(procs) >= 2, "xinference-local runs its cluster and the model in children"
        if key:
            logs = llmctl("logs", name, "-n", "5000", env=env)
            assert key not in logs.stdout + logs.stderr
            assert api_key not in logs.stdout + logs.stderr
        t1 = time.monotonic()
        stop = llmctl("stop", name, "--json", env=env, timeout=120)
        assert stop.returncode == 0, stop.stderr + stop.stdout
        print(f"{name}: stopped in {time.monotonic() - t1:.1f} s")
        deadline = time.monotonic() + 30
        while gone(procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gone(procs) == [], [p.cmdline()[:3] for p in gone(procs)]
    finally:
        llmctl("stop", "--all", env=env, timeout=120)
        if st and st.get("pgid"):
            kill_quietly(st["pgid"])


def test_auth_off(xinference_env, tiny_model, tmp_path):
    state = tmp_path / "state"
    env = llmctl_env(LLMCTL_STATE_DIR=state, LLMCTL_ENGINES_DIR=engines_dir())
    prof = profile(tmp_path, tiny_model, "xi-noauth", "  auth: false\n")
    r = llmctl("render", "--json", prof, env=env)
    assert r.returncode == 0, r.stderr
    plan = json_out(r)
    server = plan["steps"][0]
    assert server["argv"][0] == str(xinference_env / "bin" / "xinference-local")
    assert server["env"]["XINFERENCE_AUTH_ADVANCED"] == "0"
    assert server["env"]["XINFERENCE_MODEL_SRC"] == "huggingface"
    assert plan["engine_version"] == VERSION and plan["version_source"].startswith("dist-info")
    serve_smoke_stop(prof, "xi-noauth", state, env, None, state / "xinference" / "xi-noauth")


def test_a_new_user_installs_inits_and_serves(xinference_env, tiny_model, tmp_path):
    """As a new user would (issue 18): `llmctl engine install xinference`, then `llmctl init
    --backend xinference --model DIR` and `llmctl serve` with nothing edited: init names the
    installed engine and the model's family (llama-2-chat for the tiny Llama)."""
    import yaml

    state = tmp_path / "state"
    env = llmctl_env(LLMCTL_STATE_DIR=state, LLMCTL_ENGINES_DIR=engines_dir())
    prof = tmp_path / "new-user.yml"
    r = llmctl(
        "init", "--backend", "xinference", "--model", tiny_model, "--name", "xi-new",
        "--port", str(free_port()), "-o", prof, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(prof.read_text())
    assert doc["runtime"] == {"venv": f"engine:xinference@{VERSION}"}
    assert doc["options"]["model_name"] == "llama-2-chat"
    r = llmctl("doctor", prof, "--json", env=env)
    checks = {c["check"]: c for c in json_out(r)["checks"]}
    assert checks["engine.installed"]["level"] == "pass", checks["engine.installed"]
    assert str(xinference_env) in checks["engine.installed"]["message"]
    serve_smoke_stop(
        prof, "xi-new", state, env, None, state / "xinference" / "xi-new", served="xi-new"
    )


CREATE_CREDENTIALS = """
from xinference.constants import (
    XINFERENCE_AUTH_DB_PATH, get_auth_encryption_key, get_auth_jwt_secret_key,
)
from xinference.api.oauth2.advanced.auth_service import AdvancedAuthService
from xinference.api.oauth2.advanced.crypto import get_password_hash

auth = AdvancedAuthService(
    XINFERENCE_AUTH_DB_PATH, get_auth_jwt_secret_key(), get_auth_encryption_key()
)
uid = auth.db.create_user("llmctl-e2e", get_password_hash("llmctl-e2e-pw-123"),
                          permissions=["admin"])
print(auth.create_api_key_for_user(uid, name="llmctl-e2e")["key"])
print(auth.login("llmctl-e2e", "llmctl-e2e-pw-123")["access_token"])
"""


def create_credentials(xinference_env: Path, home: Path) -> tuple[str, str]:
    """A user (llmctl-e2e), an API key and an access token in the auth database under
    `home`, made with Xinference's own auth service; returns (api key, token)."""
    home.mkdir()
    made = subprocess.run(
        [str(xinference_env / "bin" / "python"), "-c", CREATE_CREDENTIALS],
        env={**os.environ, "XINFERENCE_HOME": str(home), "XINFERENCE_AUTH_ADVANCED": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, "xinference's auth API moved? " + made.stderr[-3000:]
    api_key, token = made.stdout.strip().splitlines()[-2:]
    return api_key, token


def test_auth_on_with_a_key_from_the_environment(xinference_env, tiny_model, tmp_path):
    """Xinference's own auth stays on; the credential reaches llmctl through
    server.api_key_env and travels only in headers.

    Xinference 4.1 limits API keys (sk-...) to the scopes models:read and models:list
    (auth_service.py, "API keys can only access model query and inference endpoints"),
    so launching needs a user's access token. The test creates a user, an API key and an
    access token in the auth database under options.home (as an admin would in the web
    UI): serve launches with the token; clients use the API key."""
    home = tmp_path / "xhome"
    api_key, token = create_credentials(xinference_env, home)
    assert api_key.startswith(("sk-", "xf-"))
    state = tmp_path / "state"
    env = llmctl_env(
        LLMCTL_STATE_DIR=state,
        LLMCTL_ENGINES_DIR=engines_dir(),
        XI_E2E_TOKEN=token,
        XI_E2E_KEY=api_key,
    )
    prof = profile(
        tmp_path, tiny_model, "xi-auth", f"  auth: true\n  home: {home}\n",
        server="  api_key_env: XI_E2E_TOKEN\n",
    )  # fmt: skip
    r = llmctl("render", "--json", prof, env=env)
    assert r.returncode == 0, r.stderr
    assert token not in r.stdout  # never rendered
    plan = json_out(r)
    assert "XINFERENCE_AUTH_ADVANCED" not in plan["steps"][0]["env"]
    serve_smoke_stop(prof, "xi-auth", state, env, token, home, api_key=api_key)
    assert (home / "auth" / "auth.db").is_file()


def test_uv_install_keeps_the_cpu_torch(xinference_env, tmp_path):
    """The uv path for real: uv reads neither pip's config nor its find-links, so llmctl
    passes them on; the env must get the CPU torch and no CUDA package. Uses the uv that
    xinference itself depends on (so it exists once the pip-installed env does)."""
    uv = xinference_env / "bin" / "uv"
    if not uv.exists():
        pytest.skip("no uv in the xinference env")
    bindir = tmp_path / "uvbin"
    bindir.mkdir()
    (bindir / "uv").symlink_to(uv)
    engines = tmp_path / "engines"
    env = llmctl_env(LLMCTL_ENGINES_DIR=engines)
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    t0 = time.monotonic()
    r = llmctl(
        "engine", "install", "xinference", "--version", VERSION, "--device", "cpu", "--json",
        env=env, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json_out(r)
    print(f"\nuv install: {time.monotonic() - t0:.0f} s")
    assert doc["installer"].startswith("uv")
    site = next(Path(doc["path"]).glob("lib/python*/site-packages"))
    dists = [d.name for d in site.glob("*.dist-info")]
    assert "torch-2.13.0+cpu.dist-info" in dists, [d for d in dists if "torch" in d]
    assert not [d for d in dists if d.startswith("nvidia_") and "ml_py" not in d]
    assert not [d for d in dists if d.startswith("torchvision-")]  # removed: CUDA build
    assert llmctl("engine", "remove", "xinference", env=env).returncode == 0
    assert not Path(doc["path"]).exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v", "-s"]))


def test_auth_on_with_a_login_for_the_launch(xinference_env, tiny_model, tmp_path):
    """The same, without a token pasted into the environment (it expires in 30 minutes,
    which a restart after that would hit): serve logs in with the user name and password
    from the variables options.login_user_env / login_password_env (POST /token) and
    launches with the fresh access token; readiness, smoke and clients use the API key."""
    home = tmp_path / "xhome"
    api_key, _ = create_credentials(xinference_env, home)
    state = tmp_path / "state"
    env = llmctl_env(
        LLMCTL_STATE_DIR=state,
        LLMCTL_ENGINES_DIR=engines_dir(),
        XI_E2E_KEY=api_key,
        XI_E2E_USER="llmctl-e2e",
        XI_E2E_PASSWORD="llmctl-e2e-pw-123",
    )
    login = "  login_user_env: XI_E2E_USER\n  login_password_env: XI_E2E_PASSWORD\n"
    prof = profile(
        tmp_path, tiny_model, "xi-login", f"  auth: true\n  home: {home}\n{login}",
        server="  api_key_env: XI_E2E_KEY\n",
    )  # fmt: skip
    r = llmctl("render", "--json", prof, env=env)
    assert r.returncode == 0, r.stderr
    assert "llmctl-e2e-pw-123" not in r.stdout
    steps = json_out(r)["steps"]
    assert [s["name"] for s in steps] == ["server", "login", "launch"]
    login_argv = steps[1]["argv"]
    assert login_argv[1] == "login" and login_argv[-2:] == ["--password", "***"]
    cli_help = subprocess.run(
        [str(xinference_env / "bin" / "xinference"), "login", "--help"],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    for opt in [a for a in login_argv if a.startswith("--")]:
        assert opt in cli_help, f"xinference login has no {opt}"
    serve_smoke_stop(prof, "xi-login", state, env, api_key, home, api_key=api_key)
    logs = llmctl("logs", "xi-login", "-n", "5000", env=env)
    assert "logging in as 'llmctl-e2e' (POST /token)" in logs.stdout
    assert "llmctl-e2e-pw-123" not in logs.stdout + logs.stderr
