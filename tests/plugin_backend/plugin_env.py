"""Install the echo plugin where only a subprocess sees it, and build echo-engine's wheel.

The plugin goes into a folder of its own: the package `llmctl_echo` plus a dist-info
generated from tests/plugin_backend/pyproject.toml (its entry point in `llmctl.backends`),
which `importlib.metadata` finds once the folder is on PYTHONPATH. Only the `llmctl`
subprocesses the plugin test starts get that PYTHONPATH; the main test process never
loads the plugin, so its backends table, help and docs checks stay as they are.

The engine itself is a real wheel, written here by hand (a zip with a dist-info and a
RECORD of hashes, PEP 427), so `llmctl engine install echo` installs it with pip or uv
from a local folder: no network.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ENGINE_SRC = HERE / "echo_engine_src"


def _project(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text())["project"]


def _dist_name(name: str) -> str:
    return name.replace("-", "_")


def install_plugin(site: Path) -> Path:
    """Copy the plugin package into `site` with its dist-info; return `site`."""
    proj = _project(HERE / "pyproject.toml")
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(HERE / "llmctl_echo", site / "llmctl_echo")
    info = site / f"{_dist_name(proj['name'])}-{proj['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {proj['name']}\nVersion: {proj['version']}\n"
    )
    lines = []
    for group, eps in proj.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "top_level.txt").write_text("llmctl_echo\n")
    return site


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def build_engine_wheel(out: Path) -> Path:
    """echo-engine as a py3-none-any wheel in `out`."""
    proj = _project(ENGINE_SRC / "pyproject.toml")
    name, version = _dist_name(proj["name"]), proj["version"]
    files: dict[str, bytes] = {}
    for path in sorted((ENGINE_SRC / "echo_engine").rglob("*.py")):
        files[path.relative_to(ENGINE_SRC).as_posix()] = path.read_bytes()
    info = f"{name}-{version}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {proj['name']}\nVersion: {version}\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: llmctl-plugin-test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    scripts = "".join(f"{k} = {v}\n" for k, v in proj.get("scripts", {}).items())
    files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = [_record_line(a, d) for a, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files.items():
            z.writestr(arcname, data)
    return wheel


def llmctl(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300):
    """Run `python -m llmdeploy_cli ARGS` with `env` (which carries the plugin's path)."""
    return subprocess.run(
        [sys.executable, "-m", "llmdeploy_cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def plugin_env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env.update(extra)
    return env
