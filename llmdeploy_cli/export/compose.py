"""docker compose: one service running the server step's argv, GPUs reserved through
`deploy.resources.reservations.devices` (driver nvidia), a healthcheck on the backend's
health path, the model cache as a named volume.

Secrets never appear in the file: each is `${SOURCE:?...}`, which compose fills from the
shell (or an .env file next to compose.yaml) when it starts the service. Every other `$`
is doubled, so compose does not interpolate what the profile wrote.
"""

from __future__ import annotations

import math

from llmdeploy_cli.export.common import (
    Bundle,
    ExportError,
    ExportOptions,
    Prepared,
    dump_yaml,
)

HEALTH_INTERVAL_S = 10


def _lit(value: str) -> str:
    return value.replace("$", "$$")


def _secret_ref(source: str) -> str:
    return "${" + source + ":?set " + source + " in the shell or .env}"


def _health_test(p: Prepared, tool: str) -> list[str]:
    url = f"http://127.0.0.1:{p.port}{p.health_path}"
    if tool == "curl":
        return ["CMD", "curl", "-fsS", "-o", "/dev/null", url]
    if tool == "wget":
        return ["CMD", "wget", "-q", "-O", "/dev/null", url]
    return [
        "CMD",
        "python3",
        "-c",
        f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5)",
    ]


def service(p: Prepared, opts: ExportOptions, probe_tool: str = "python3") -> dict:
    secret_by_env = {s.env: s.source for s in p.secret_env}
    argv = []
    for a in p.argv:
        if a.startswith("$(") and a.endswith(")") and a[2:-1] in secret_by_env:
            argv.append(_secret_ref(secret_by_env[a[2:-1]]))
        else:
            argv.append(_lit(a))
    env = {k: _lit(v) for k, v in p.env.items()}
    for s in p.secret_env:
        env[s.env] = _secret_ref(s.source)
    svc: dict = {"image": p.image, "entrypoint": argv}
    if env:
        svc["environment"] = env
    host = p.published_host if p.published_host not in ("", "*") else "0.0.0.0"
    svc["ports"] = [f"{host}:{p.port}:{p.port}" if ":" not in host else f"{p.port}:{p.port}"]
    volumes = [f"model-cache:{p.cache_path}"]
    if p.model_dir and p.model_dir != p.cache_path:
        volumes.append(f"{p.model_dir}:{p.model_dir}:ro")
    for i, (path, _c) in enumerate(p.files):
        volumes.append(f"./files/{i}-{path.rsplit('/', 1)[-1]}:{path}:ro")
    svc["volumes"] = volumes
    if p.gpus > 0:
        svc["shm_size"] = opts.shm_size.replace("Gi", "gb")
        svc["deploy"] = {
            "resources": {
                "reservations": {
                    "devices": [{"driver": "nvidia", "count": p.gpus, "capabilities": ["gpu"]}]
                }
            }
        }
    svc["healthcheck"] = {
        "test": _health_test(p, probe_tool),
        "interval": f"{HEALTH_INTERVAL_S}s",
        "timeout": "5s",
        "retries": 3,
        "start_period": f"{math.ceil(p.start_budget_s)}s",
        "start_interval": "5s",
    }
    svc["restart"] = "on-failure" if p.restart == "on-failure" else "no"
    svc["stop_signal"] = p.stop_signal
    svc["stop_grace_period"] = f"{math.ceil(p.grace_s)}s"
    return svc


def document(p: Prepared, opts: ExportOptions, probe_tool: str = "python3") -> dict:
    if opts.nodes > 1:
        raise ExportError(
            "compose runs on one machine: --nodes is for --to kubernetes (LeaderWorkerSet)"
        )
    return {
        "name": p.name,
        "services": {p.name: service(p, opts, probe_tool)},
        "volumes": {"model-cache": {}},
    }


def render(p: Prepared, opts: ExportOptions, probe_tool: str = "python3") -> Bundle:
    doc = document(p, opts, probe_tool)
    files = [("compose.yaml", dump_yaml(doc))]
    for i, (path, content) in enumerate(p.files):
        files.append((f"files/{i}-{path.rsplit('/', 1)[-1]}", content))
    notes = list(p.notes)
    if p.secret_env:
        names = ", ".join(sorted({s.source for s in p.secret_env}))
        notes.append(f"secrets come from the shell (or .env) when compose starts: set {names}")
    if p.gpus > 0:
        notes.append(
            f"{p.gpus} GPU(s) reserved with driver nvidia (needs the NVIDIA Container Toolkit)"
        )
    notes.append(
        f"healthcheck: GET {p.health_path} with {probe_tool} inside the image "
        "(--probe-tool curl|wget for images without python3)"
    )
    if p.actions:
        names = ", ".join(a[0] for a in p.actions)
        notes.append(
            f"later steps ({names}) are not run by compose: run them once the service is "
            f"healthy (docker compose exec {p.name} ...), as `llmctl render` shows them"
        )
    return Bundle("compose", files, notes, list(p.warnings))
