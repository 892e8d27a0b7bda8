"""Shared by the export tests: the fixed environment goldens are rendered in, and the
profile `llmctl render` must agree with (the same host/port overrides export applies)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
DATA = HERE / "data"
ROOT = HERE.parent.parent
PROFILES = ROOT / "profiles"
EXAMPLES = sorted(PROFILES.glob("*.yml"))
MULTINODE = DATA / "vllm-multinode.yml"

SECRET_VALUES = ("sk-golden-secret", "hf_golden", "literal-in-profile-secret")
ENVIRON = {"HOME": "/home/user", "LLMCTL_API_KEY": "sk-golden-secret", "HF_TOKEN": "hf_golden"}
NO_DEFAULT_IMAGE = "transformers-serve:5.23"  # transformers has no official serve image


def has_default_image(backend: str) -> bool:
    """Does the backend's declared container capability name an image?"""
    from llmdeploy_cli import registry
    from llmdeploy_cli.capabilities import supported

    container = registry.get(backend).container
    return supported(container) and container.image_template is not None


def pinned_version(path: Path) -> str:
    from llmdeploy_cli import registry
    from llmdeploy_cli.profile import load_profile

    profile = load_profile(path, ENVIRON)
    return profile.runtime.engine_version or registry.get(profile.backend).newest_known


def same_profile(path: Path, *, bind_all: bool = True, nodes: int = 1) -> dict:
    """The profile data `llmctl render` is compared against, built independently of export:
    the file as written, host 0.0.0.0 (containers), a fixed port, multi-node flags; for a
    container, no runtime.venv/conda_env/executable (the image's own executable runs)."""
    from llmdeploy_cli import registry

    data = yaml.safe_load(path.read_text())
    server = dict(data.get("server") or {})
    if bind_all:
        server["host"] = "0.0.0.0"
        rt = {k: v for k, v in (data.get("runtime") or {}).items() if k == "engine_version"}
        if "runtime" in data:
            data["runtime"] = rt
    if server.get("port") in (None, "auto"):
        server["port"] = registry.get(data["backend"]).default_port
    data["server"] = server
    if nodes > 1:
        opts = dict(data.get("options") or {})
        opts.update(nnodes=nodes, node_rank=0, master_addr="$(LWS_LEADER_ADDRESS)")
        data["options"] = opts
        data["extra_args"] = [
            *(data.get("extra_args") or []),
            "--distributed-executor-backend",
            "mp",
        ]
    return data


def render_json(data: dict, folder: Path, name: str, capsys, *, container: bool = True) -> dict:
    """`llmctl render --json` of a profile written into folder (`container`: as for a
    container, where no engine env of this machine exists: engine_env.without_installed_envs)."""
    import contextlib

    from llmdeploy_cli.cli.app import main
    from llmdeploy_cli.engine_env import without_installed_envs

    p = folder / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    capsys.readouterr()
    with without_installed_envs() if container else contextlib.nullcontext():
        assert main(["render", str(p), "--json"]) == 0
    return json.loads(capsys.readouterr().out)
