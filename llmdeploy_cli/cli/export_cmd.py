"""`llmctl export FILE --to kubernetes|compose|systemd`: the profile for a cluster, a
compose host or a systemd machine (docs/scale-out.md). Static like render: no network."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from llmdeploy_cli.cli.output import emit_json, info, out, warn


class Target(str, enum.Enum):
    kubernetes = "kubernetes"
    compose = "compose"
    systemd = "systemd"


class Cache(str, enum.Enum):
    pvc = "pvc"
    hostpath = "hostpath"


class ProbeTool(str, enum.Enum):
    python3 = "python3"
    curl = "curl"
    wget = "wget"


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    file: Annotated[Path, typer.Argument(help="Profile file.")],
    to: Annotated[Target, typer.Option("--to", "-t", help="What to produce.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write the files into this directory."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    image: Annotated[
        str | None,
        typer.Option(help="Container image (default per backend, e.g. vllm/vllm-openai:v0.33.0)."),
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Kubernetes namespace.")] = None,
    cache: Annotated[Cache, typer.Option(help="Model cache: a PVC or a hostPath.")] = Cache.pvc,
    cache_size: Annotated[str, typer.Option(help="PVC size.")] = "100Gi",
    cache_path: Annotated[
        str | None,
        typer.Option(help="Cache mount path in the container (default: HF_HOME or the image's)."),
    ] = None,
    host_path: Annotated[
        str | None, typer.Option(help="hostPath directory for --cache hostpath.")
    ] = None,
    storage_class: Annotated[str | None, typer.Option(help="PVC storageClassName.")] = None,
    gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs (default: tensor x pipeline parallel).")
    ] = None,
    nodes: Annotated[
        int,
        typer.Option(min=1, help="Nodes per replica: >1 is multi-node vLLM (LeaderWorkerSet)."),
    ] = 1,
    replicas: Annotated[int, typer.Option(min=1, help="Replicas (Kubernetes).")] = 1,
    secret_name: Annotated[
        str | None, typer.Option(help="Kubernetes Secret with the keys (default NAME-secrets).")
    ] = None,
    env_file: Annotated[
        str | None, typer.Option(help="systemd EnvironmentFile (default /etc/llmctl/NAME.env).")
    ] = None,
    probe_tool: Annotated[
        ProbeTool, typer.Option(help="compose healthcheck tool inside the image.")
    ] = ProbeTool.python3,
) -> int:
    """Export a profile: Kubernetes manifests, a compose file, or a systemd unit that run
    exactly the server command `llmctl render` shows (bind host 0.0.0.0 in containers).
    Secrets are references (Secret, ${VAR}, EnvironmentFile), never values."""
    from llmdeploy_cli.export import export as run_export
    from llmdeploy_cli.export.common import ExportOptions

    opts = ExportOptions(
        image=image,
        namespace=namespace,
        cache=cache.value,
        cache_size=cache_size,
        cache_path=cache_path,
        host_path=host_path,
        storage_class=storage_class,
        gpus=gpus,
        nodes=nodes,
        replicas=replicas,
        secret_name=secret_name,
        env_file=env_file,
    )
    bundle = run_export(file, to.value, opts, probe_tool=probe_tool.value)
    written: list[str] = []
    if output is not None:
        from llmdeploy_cli.fsutil import atomic_write

        for rel, text in bundle.files:
            dest = output / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(dest, text)
            written.append(str(dest))
    if json_:
        doc = bundle.as_dict()
        if output is not None:
            doc["written"] = written
        emit_json(doc)
        return 0
    for w in bundle.warnings:
        warn(w)
    for n in bundle.notes:
        info(f"note: {_esc(n)}")
    if output is not None:
        for path in written:
            info(f"wrote {_esc(path)}")
        return 0
    if to is Target.kubernetes:
        out("---\n".join(text for _rel, text in bundle.files).rstrip("\n"))
    else:
        for i, (rel, text) in enumerate(bundle.files):
            if len(bundle.files) > 1:
                out(f"{'' if i == 0 else chr(10)}# ==> {rel} <==")
            out(text.rstrip("\n"))
    return 0


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
