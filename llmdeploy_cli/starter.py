"""The commented starter profile `llmctl init` writes."""

from __future__ import annotations

import json
import re

from llmdeploy_cli.backend import COMMON_KEYS, Backend


def _slug(model: str) -> str:
    base = model.rstrip("/").split("/")[-1].split(":")[0] or "model"
    base = re.sub(r"\.gguf$", "", base, flags=re.I)
    slug = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-._")
    return (slug or "model")[:63]


def _q(value: str) -> str:
    """A YAML-safe scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def _flow(d: dict) -> str:
    """A one-line YAML mapping (JSON is valid YAML)."""
    return json.dumps(d)


def starter_profile(
    backend: Backend, model: str, *, name: str | None = None, port=None, engine_ref=None
) -> str:
    """`engine_ref`: the `engine:NAME@VERSION` of an install `llmctl engine install` made
    (written as runtime.venv). A backend may declare `starter_options(model) -> (options,
    env, comment lines)` for what its engine needs that the model folder tells."""
    name = name or _slug(model)
    sup = backend.supports
    hook = getattr(backend, "starter_options", None)
    options, env, notes = hook(model) if callable(hook) else ({}, {}, [])

    def opt(key: str, line: str) -> str:
        # A key this backend cannot honour is left out rather than shown commented.
        return line if key not in COMMON_KEYS or key in sup else None

    lines = [
        f"# llmctl profile: {backend.name}. Reference: docs/profiles.md",
        f"name: {_q(name)}",
        f"backend: {backend.name}",
        "",
        "model:",
        f"  source: {_q(model)}  # local folder, GGUF file, or hub id",
        opt("model.served_name", f"  # served_name: {name}  # what clients put in `model`"),
        opt("model.dtype", "  # dtype: bfloat16"),
        opt("model.trust_remote_code", "  # trust_remote_code: false"),
        opt("model.quantization", "  # quantization: awq"),
        "",
        "server:",
        "  host: 127.0.0.1  # 0.0.0.0 exposes it to your network",
        f"  port: {port if port is not None else backend.default_port}  # or: auto",
        opt(
            "server.api_key_env",
            "  # api_key_env: LLMCTL_API_KEY  # the key stays in the environment",
        ),
        "",
        "resources:",
        opt("resources.device", "  # device: cuda"),
        opt("resources.gpu_memory_utilization", "  # gpu_memory_utilization: 0.9"),
        opt("resources.max_model_len", "  # max_model_len: 4096"),
        opt("resources.max_num_seqs", "  # max_num_seqs: 16"),
        opt("resources.tensor_parallel", "  # tensor_parallel: 1"),
        "  # visible_devices: '0'",
        "",
        "offline: false  # true sets HF_HUB_OFFLINE and the other offline switches",
        "",
        *(
            [
                f"# the engine installed by `llmctl engine install {backend.name}`",
                "runtime:",
                f"  venv: {_q(engine_ref)}",
                "",
            ]
            if engine_ref
            else []
        ),
        *([f"env: {_flow(env)}", ""] if env else []),
        "# Engine-specific options: `llmctl backends --json` lists them.",
        *[f"# {n}" for n in notes],
        f"options: {_flow(options)}",
        "# Raw engine flags the schema does not model:",
        "extra_args: []",
        "",
        "smoke:",
        "  prompt: Say hello in one short sentence.",
        "  max_tokens: 32",
        "",
        "restart:",
        "  policy: on-failure",
        "  max_restarts: 3",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"
