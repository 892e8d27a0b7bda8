"""What every export target shares: the profile rendered for a container, secrets, probes.

An export never invents a command line. It renders the profile through the same backend
`llmctl render` uses, with exactly one honest change: the bind host becomes 0.0.0.0 (a
server bound to loopback inside a pod or container cannot be reached), and `port: auto`
becomes the backend's default port (a manifest needs a fixed port). Both changes are
reported in the notes, and `Prepared.effective` is the profile data that was rendered, so
a test (or a user) can run `llmctl render` on it and compare argv for argv.

Secrets: the profile names environment variables (server.api_key_env, hub.token_env,
secret-looking keys under env:). Export renders with a sentinel in place of each such
variable, so every secret in the plan is traced back to the variable that holds it and
is emitted as a reference (Kubernetes secretKeyRef, compose ${VAR}, systemd
EnvironmentFile), never as a value. The rendered text is checked for leaks before it is
returned.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from llmdeploy_cli.capabilities import supported
from llmdeploy_cli.command import Secret, looks_secret
from llmdeploy_cli.errors import LlmctlError, ProfileError, UsageError

# The image, its cache path and the variable that moves the cache are each backend's
# declared `container` capability (llmdeploy_cli.capabilities.ContainerSpec): the engine
# project's own image, tagged by release (the tag is the engine version the argv was
# rendered for, so image and flags agree); --image overrides.
POD_BIND_HOST = "0.0.0.0"
_SENTINEL = "llmctl-export-secret-{}"


class ExportError(LlmctlError):
    """The profile cannot be exported to this target as asked (exit 2: change the ask)."""

    code = UsageError.code
    kind = "export"


@dataclass(frozen=True)
class ExportOptions:
    image: str | None = None  # container image; default: the backend's container capability
    namespace: str | None = None
    cache: str = "pvc"  # pvc | hostpath
    cache_size: str = "100Gi"
    cache_path: str | None = None  # where the model cache is mounted in the container
    host_path: str | None = None  # hostPath source (cache=hostpath); default: cache_path
    storage_class: str | None = None
    gpus: int | None = None  # override the GPU count (tensor x pipeline parallel)
    nodes: int = 1  # > 1: multi-node vLLM as a LeaderWorkerSet
    replicas: int = 1
    shm_size: str = "16Gi"
    secret_name: str | None = None  # Kubernetes Secret holding the keys; default NAME-secrets
    env_file: str | None = None  # systemd EnvironmentFile; default /etc/llmctl/NAME.env
    engine_version: str | None = None  # pin (tests); default: detected like render


@dataclass(frozen=True)
class SecretRef:
    """One secret the engine needs: the env var it reads and the variable holding it."""

    env: str  # the variable the engine reads (VLLM_API_KEY)
    source: str  # the variable the profile names (LLMCTL_API_KEY) = the Secret's key


@dataclass
class Prepared:
    """The profile rendered for a container, split into what each target needs."""

    name: str  # DNS-1123 label derived from the profile name
    profile_name: str
    backend: str
    argv: list[str]  # server argv; a secret argv value is "$(VAR)" (VAR is in secret_env)
    env: dict[str, str]  # plain environment of the server step (render's env minus secrets)
    secret_env: list[SecretRef]
    actions: list[tuple[str, list[str], dict[str, str]]]  # later steps: name, argv, env
    files: list[tuple[str, str]]  # generated files (path, content)
    port: int
    health_path: str
    published_host: str  # the profile's own host: where compose/systemd publish the port
    gpus: int
    model_dir: str | None  # a local model directory/file (mounted at the same path)
    cache_path: str
    start_budget_s: float  # seconds from start until serving (start + load deadlines)
    grace_s: float
    stop_signal: str
    restart: str
    max_restarts: int
    backoff_initial: float
    backoff_max: float
    image: str
    effective: dict  # the profile data export rendered (host/port overrides applied)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    secret_values: set[str] = field(default_factory=set)


@dataclass
class Bundle:
    """What an export produces: files (name, text) and notes for the human."""

    target: str
    files: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "target": self.target,
            "files": [{"path": p, "content": c} for p, c in self.files],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def k8s_name(name: str) -> str:
    """A DNS-1123 label (Service names are stricter than profile names: no dots)."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = f"llm-{out}"
    return out[:63].rstrip("-")


def effective_data(
    raw: dict, default_port: int, *, bind_all: bool = True
) -> tuple[dict, list[str]]:
    """The profile data export renders: host 0.0.0.0, a fixed port. Pure dict surgery."""
    import copy

    data = copy.deepcopy(raw)
    notes = []
    server = dict(data.get("server") or {})
    host = server.get("host", "127.0.0.1")
    if bind_all and host != POD_BIND_HOST:
        notes.append(
            f"server.host {host} -> {POD_BIND_HOST}: inside a container the server must bind "
            "all interfaces to be reachable; the manifests run what `llmctl render` shows "
            f"for the profile with server.host: {POD_BIND_HOST}"
        )
        server["host"] = POD_BIND_HOST
    if server.get("port") in (None, "auto"):
        if server.get("port") == "auto":
            notes.append(f"server.port auto -> {default_port} (a manifest needs a fixed port)")
        server["port"] = default_port
    data["server"] = server
    return data, notes


HOST_RUNTIME_KEYS = ("venv", "conda_env", "executable")


def _without_host_runtime(data: dict) -> list[str]:
    """Drop runtime.venv/conda_env/executable (paths on this machine) from the data a
    container is rendered from; runtime.engine_version (a version pin) stays."""
    rt = data.get("runtime")
    if not isinstance(rt, dict):
        return []
    dropped = [k for k in HOST_RUNTIME_KEYS if rt.get(k) is not None]
    if not dropped:
        return []
    data["runtime"] = {k: v for k, v in rt.items() if k not in HOST_RUNTIME_KEYS}
    keys = ", ".join(f"runtime.{k}" for k in dropped)
    return [
        f"{keys} ignored: the container runs its image's own executable, not this "
        "machine's environment"
    ]


def prepare(
    path: str | Path,
    target: str,
    opts: ExportOptions,
    environ: Mapping[str, str] | None = None,
    *,
    bind_all: bool = True,
) -> Prepared:
    """Load, override, render, and split the plan into what the targets need.

    bind_all=False keeps the profile's own host (systemd runs on the host itself).
    """
    from llmdeploy_cli import registry
    from llmdeploy_cli.profile import profile_from_data
    from llmdeploy_cli.resolve import resolve_profile
    from llmdeploy_cli.yamlfile import load_yaml

    environ = dict(os.environ if environ is None else environ)
    raw, smap = load_yaml(path, environ)
    if not isinstance(raw, dict) or "backend" not in raw:
        # Let the normal loader produce the usual file:line error.
        profile_from_data(raw, smap, Path(path))
    first = profile_from_data(raw, smap, Path(path))
    try:
        backend = registry.get(first.backend)
    except registry.UnknownBackend as e:
        raise ProfileError([e.issue(first)]) from None

    # Secrets: the variables the profile names get sentinels, so we can trace them.
    if not first.server.managed:
        raise ExportError(
            "server.managed is false: someone else runs this server, so there is nothing to deploy",
            hint="export the profile of the machine that runs the engine",
        )
    sources = list(dict.fromkeys(v for v in (first.server.api_key_env, first.hub.token_env) if v))
    sentinels = {_SENTINEL.format(i): v for i, v in enumerate(sources)}
    render_env = dict(environ)
    for s, var in sentinels.items():
        render_env[var] = s
    raw, smap = load_yaml(path, render_env)

    data, notes = effective_data(raw, backend.default_port, bind_all=bind_all)
    multi_node = opts.nodes > 1
    if multi_node:
        data, mn_notes = _multi_node_data(data, backend, opts.nodes)
        notes += mn_notes
    if bind_all:
        notes += _without_host_runtime(data)
    profile = profile_from_data(data, smap, Path(path))
    from contextlib import nullcontext

    from llmdeploy_cli.engine_env import without_installed_envs

    # a container runs its image's executable: no engine env of this machine
    with without_installed_envs() if bind_all else nullcontext():
        r = resolve_profile(profile, render_env, engine_version=opts.engine_version)
    plan = r.plan
    server = plan.server
    if server.kind != "server":
        raise ExportError(f"backend '{backend.name}' plan has no server step to export")

    secret_values: set[str] = set()
    secret_env: list[SecretRef] = []
    env: dict[str, str] = {}
    by_value: dict[str, str] = {}  # secret value -> env var name carrying it
    for k, v in server.command.env.items():
        if isinstance(v, Secret) or looks_secret(k):
            src = sentinels.get(str(v), k)
            if str(v) not in sentinels and v:
                secret_values.add(str(v))
            secret_env.append(SecretRef(env=k, source=src))
            by_value[str(v)] = k
        else:
            env[k] = v
    argv: list[str] = []
    for a in server.command.argv:
        if isinstance(a, Secret):
            var = by_value.get(str(a))
            if var is None:
                src = sentinels.get(str(a), "LLMCTL_SECRET_ARG")
                var = src
                secret_env.append(SecretRef(env=var, source=src))
                by_value[str(a)] = var
            if str(a) not in sentinels:
                secret_values.add(str(a))
            argv.append(f"$({var})")
            notes.append(
                f"backend '{backend.name}' takes the key only as a flag: argv references it "
                f"($({var}) in Kubernetes, ${{{var}}} in compose and systemd), filled in when "
                "the server starts; no file holds it, but it is in the engine's command line "
                "(visible in the process list where the engine runs)"
            )
        else:
            argv.append(str(a))

    for text in [*argv, *env.values()]:
        for s, var in sentinels.items():
            if s in text:
                raise ExportError(
                    f"the profile writes ${{{var}}} (a secret) into a plain value of the "
                    "server command; export would put the key in the manifest",
                    hint="reference the key through server.api_key_env/hub.token_env only",
                )

    actions = []
    for step in plan.steps[1:]:
        a_argv = []
        for a in step.command.argv:
            if isinstance(a, Secret):
                raise ExportError(
                    f"step '{step.name}' takes a secret on its command line, which a hook "
                    "would have to carry in the manifest; export will not write it",
                    hint=f"run '{step.name}' by hand once the server answers (`llmctl render` "
                    "shows it), or export a profile whose later steps need no secret",
                )
            a_argv.append(str(a))
        a_env = {k: v for k, v in step.command.env.items() if not isinstance(v, Secret)}
        actions.append((step.name, a_argv, a_env))
        if step.kind != "action":
            raise ExportError(
                f"step '{step.name}' is a second long-running process ({step.kind}); "
                "export maps only one server per pod",
            )

    health_url = plan.endpoint.health_url or (plan.endpoint.base_url + "/models")
    parts = urlsplit(health_url)
    port = parts.port or backend.port(profile, _ctx_for_port())
    health_path = parts.path or "/"

    res = profile.resources
    if opts.gpus is not None:
        gpus = opts.gpus
    elif res.device == "cpu":
        gpus = 0
    else:
        gpus = res.tensor_parallel * res.pipeline_parallel
    if multi_node and gpus % opts.nodes:
        raise ExportError(
            f"{gpus} GPUs (tensor_parallel x pipeline_parallel) do not split evenly over "
            f"{opts.nodes} nodes",
            hint="make tensor_parallel x pipeline_parallel a multiple of --nodes",
        )

    local = profile.model_path()
    model_dir = str(local) if local is not None else None
    container = backend.capability("container")
    if bind_all and not supported(container) and not (opts.image and opts.cache_path):
        raise ExportError(
            f"backend '{backend.name}' declares no container (its container capability is "
            "NOT_SUPPORTED): llmctl knows no image and no cache path for it",
            hint="pass --image and --cache-path, or export --target systemd",
        )
    cache_path = opts.cache_path
    if cache_path is None and supported(container):
        var = container.cache_env
        cache_path = env[var] if var and env.get(var) else container.cache_path
    if model_dir:
        notes.append(
            f"the model is a local path ({model_dir}): it is mounted at the same path so "
            "argv stays the same; put the model there (the PVC, or the host path)"
        )
    if argv and os.path.isabs(argv[0]):
        warn = (
            f"argv[0] is a host path ({argv[0]}, from runtime.venv/conda_env/executable): "
            "the image must provide the engine at that path"
        )
        notes.append(warn)

    h = profile.health
    start = h.start_timeout or backend.timeouts[0]
    load = h.load_timeout or backend.timeouts[1]
    stop = backend.stop_plan(profile)
    import signal as _signal

    try:
        sig_name = _signal.Signals(stop.signal).name
    except ValueError:
        sig_name = "SIGTERM"
    image = opts.image or default_image(backend, plan.engine_version, notes)
    if bind_all and not image:
        raise ExportError(
            f"no default container image for backend '{backend.name}'",
            hint="pass --image with an image that has the engine installed",
        )
    if bind_all and opts.image is None:
        notes.append(
            f"image {image} (the {backend.name} project's image for the engine version the "
            "command was rendered for; --image to change)"
        )
    prof_host = (raw.get("server") or {}).get("host", "127.0.0.1")
    if plan.files:
        for f in plan.files:
            if any(s and s in f.content for s in (*secret_values, *sentinels)):
                raise ExportError(f"generated file {f.path} carries a secret; not exported")

    return Prepared(
        name=k8s_name(profile.name),
        profile_name=profile.name,
        backend=backend.name,
        argv=argv,
        env=env,
        secret_env=secret_env,
        actions=actions,
        files=[(f.path, f.content) for f in plan.files],
        port=int(port),
        health_path=health_path,
        published_host=prof_host,
        gpus=gpus,
        model_dir=model_dir,
        cache_path=cache_path or "",
        start_budget_s=float(start + load),
        grace_s=float(stop.grace_s),
        stop_signal=sig_name,
        restart=profile.restart.policy,
        max_restarts=profile.restart.max_restarts,
        backoff_initial=profile.restart.backoff_initial,
        backoff_max=profile.restart.backoff_max,
        image=image,
        effective=data,
        notes=notes,
        warnings=list(plan.warnings),
        secret_values=secret_values | set(sentinels),
    )


def default_image(backend, engine_version: str | None, notes: list[str]) -> str:
    """The engine project's image tagged with the release the argv was rendered for; a
    version with no release tag (a dev build, a local +cpu build) falls back to the newest
    release llmctl knows, with a note."""
    container = backend.capability("container")
    template = container.image_template if supported(container) else None
    if template is None:
        return ""
    version = engine_version or backend.newest_known
    if not re.fullmatch(r"\d+(\.\d+)+(\.post\d+)?", version):
        notes.append(
            f"{backend.name} {version} has no release image tag: the image is "
            f"{backend.newest_known}'s; pass --image for the build you run"
        )
        version = backend.newest_known
    return template.format(version=version)


def _ctx_for_port():
    from llmdeploy_cli.backend import RenderContext

    return RenderContext(engine_version="0")


def _multi_node_data(data: dict, backend, nodes: int) -> tuple[dict, list[str]]:
    """Multi-node: vLLM's own --nnodes/--node-rank/--master-addr, through its options."""
    fields = getattr(backend.Options, "model_fields", {})
    if not {"nnodes", "node_rank", "master_addr"} <= set(fields):
        raise ExportError(
            f"backend '{backend.name}' has no multi-node flags llmctl knows (--nodes {nodes})",
            hint="multi-node export is for vLLM (--nnodes/--node-rank/--master-addr)",
        )
    opts = dict(data.get("options") or {})
    clash = [k for k in ("nnodes", "node_rank", "master_addr") if k in opts]
    if clash:
        raise ExportError(
            f"options.{clash[0]} is set in the profile and --nodes {nodes} sets it too",
            hint="remove it from the profile; export sets the multi-node flags per pod",
        )
    opts.update({"nnodes": nodes, "node_rank": 0, "master_addr": "$(LWS_LEADER_ADDRESS)"})
    data["options"] = opts
    extra = list(data.get("extra_args") or [])
    if not any(str(a).startswith("--distributed-executor-backend") for a in extra):
        extra += ["--distributed-executor-backend", "mp"]
    data["extra_args"] = extra
    return data, [
        f"multi-node: {nodes} pods per replica (LeaderWorkerSet); the leader runs vLLM with "
        "--nnodes/--node-rank 0/--master-addr $(LWS_LEADER_ADDRESS) and serves the API, "
        "workers run the same argv with --node-rank $(LWS_WORKER_INDEX) --headless"
    ]


def startup_failures(budget_s: float, period_s: int) -> int:
    return max(1, math.ceil(budget_s / period_s))


def check_no_leak(bundle: Bundle, secrets: set[str]) -> None:
    """The last line of defence: no secret value (or sentinel) in any exported text."""
    for path, text in bundle.files:
        for s in secrets:
            if s and len(s) >= 4 and s in text:
                raise LlmctlError(
                    f"internal: a secret value reached {path}; nothing was written",
                    hint="report this bug",
                )


def dump_yaml(obj) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    _Dumper.add_representer(Secret, _str)
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
