"""Kubernetes: a Deployment (or a LeaderWorkerSet for multi-node vLLM), a Service, the
model cache (PVC or hostPath), a ConfigMap for generated files.

What maps to what:
- the container's command + args are the server step's argv, as `llmctl render` shows
  it for the profile with server.host 0.0.0.0 (common.py says why);
- GPUs: `nvidia.com/gpu` = tensor_parallel x pipeline_parallel (per pod: / --nodes);
- probes from the backend's readiness: the endpoint's health URL (vLLM /health, Ollama
  GET /, ...) answers 200 only when the server serves. A startup probe covers the model
  load with the profile's start + load deadlines (or the backend's defaults); readiness
  and liveness poll the same path after it;
- secrets: env `valueFrom.secretKeyRef` into a Secret the user creates (never a value in
  a manifest, never in argv; a backend that takes a key only as a flag gets `$(VAR)`,
  which the kubelet expands from that env var);
- later steps (Ollama create/pull, Xinference launch): a postStart hook in the server
  container that retries the step's argv until the server takes it;
- multi-node vLLM (LeaderWorkerSet, leaderworkerset.x-k8s.io/v1): vLLM's own
  `--nnodes N --node-rank R --master-addr ADDR` (vllm/engine/arg_utils.py, ParallelConfig:
  "for multi-node distributed inference when distributed_executor_backend is mp") with
  `--distributed-executor-backend mp`; workers add `--headless`
  (vllm/entrypoints/cli/serve.py: run the engine without the API server). LWS injects
  LWS_LEADER_ADDRESS and LWS_WORKER_INDEX into every container (lws
  api/leaderworkerset/v1/leaderworkerset_types.go).
"""

from __future__ import annotations

import math
import shlex

from llmdeploy_cli.export.common import (
    Bundle,
    ExportOptions,
    Prepared,
    dump_yaml,
    startup_failures,
)

LWS_API = "leaderworkerset.x-k8s.io/v1"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
STARTUP_PERIOD_S = 10
ACTION_RETRY_S = 10


def manifests(p: Prepared, opts: ExportOptions) -> list[dict]:
    """The Kubernetes objects, in apply order."""
    objs: list[dict] = []
    if p.files:
        objs.append(_configmap(p, opts))
    if opts.cache == "pvc":
        objs.append(_pvc(p, opts))
    if opts.nodes > 1:
        objs.append(_lws(p, opts))
    else:
        objs.append(_deployment(p, opts))
    objs.append(_service(p, opts))
    return objs


def render(p: Prepared, opts: ExportOptions) -> Bundle:
    objs = manifests(p, opts)
    files = [(f"{_file_stem(o)}.yaml", dump_yaml(o)) for o in objs]
    notes = list(p.notes)
    secret = _secret_name(p, opts)
    if p.secret_env:
        keys = sorted({s.source for s in p.secret_env})
        lits = " ".join(f'--from-literal={k}="${k}"' for k in keys)
        notes.append(
            f"create the Secret first (values come from your shell, never from llmctl): "
            f"kubectl create secret generic {secret} {lits}"
        )
    if opts.cache == "pvc":
        notes.append(
            f"model cache: PersistentVolumeClaim {p.name}-model-cache ({opts.cache_size}) "
            f"mounted at {p.cache_path}"
        )
    else:
        notes.append(
            f"model cache: hostPath {opts.host_path or p.cache_path} mounted at {p.cache_path}"
            " (the pod must land on a node that has it: add a nodeSelector)"
        )
    if p.stop_signal != "SIGTERM":
        notes.append(
            f"the backend stops with {p.stop_signal}; Kubernetes sends SIGTERM, then SIGKILL "
            f"after terminationGracePeriodSeconds ({math.ceil(p.grace_s)})"
        )
    if p.restart == "no":
        notes.append(
            "restart.policy is 'no' but a Deployment always restarts a failed container "
            "(with the kubelet's own back-off)"
        )
    if p.actions:
        names = ", ".join(a[0] for a in p.actions)
        notes.append(
            f"later steps ({names}) run as a postStart hook in the server container, retried "
            f"every {ACTION_RETRY_S} s until the server takes them (the hook needs /bin/sh "
            "in the image)"
        )
    return Bundle("kubernetes", files, notes, list(p.warnings))


def _file_stem(obj: dict) -> str:
    return obj["kind"].lower()


def _meta(p: Prepared, opts: ExportOptions, name: str | None = None) -> dict:
    meta = {"name": name or p.name, "labels": _labels(p)}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta


def _labels(p: Prepared) -> dict:
    return {
        "app.kubernetes.io/name": p.name,
        "app.kubernetes.io/component": "llm-server",
        "app.kubernetes.io/managed-by": "llmctl",
        "llmctl.dev/backend": p.backend,
    }


def _secret_name(p: Prepared, opts: ExportOptions) -> str:
    return opts.secret_name or f"{p.name}-secrets"


def _env(p: Prepared, opts: ExportOptions) -> list[dict]:
    env = [{"name": k, "value": v} for k, v in p.env.items()]
    secret = _secret_name(p, opts)
    for s in p.secret_env:
        env.append(
            {"name": s.env, "valueFrom": {"secretKeyRef": {"name": secret, "key": s.source}}}
        )
    return env


def _probe(p: Prepared, period: int, failures: int, timeout: int) -> dict:
    return {
        "httpGet": {"path": p.health_path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _volumes_and_mounts(p: Prepared, opts: ExportOptions) -> tuple[list[dict], list[dict]]:
    volumes: list[dict] = []
    mounts: list[dict] = []
    if opts.cache == "pvc":
        volumes.append(
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": f"{p.name}-model-cache"}}
        )
    else:
        volumes.append(
            {
                "name": "model-cache",
                "hostPath": {"path": opts.host_path or p.cache_path, "type": "DirectoryOrCreate"},
            }
        )
    mounts.append({"name": "model-cache", "mountPath": p.cache_path})
    if p.model_dir and p.model_dir != p.cache_path:
        if opts.cache == "pvc":
            # The model lives in the same claim under model/, mounted where argv points.
            mounts.append(
                {
                    "name": "model-cache",
                    "mountPath": p.model_dir,
                    "subPath": "model",
                    "readOnly": True,
                }
            )
        else:
            volumes.append({"name": "model", "hostPath": {"path": p.model_dir}})
            mounts.append({"name": "model", "mountPath": p.model_dir, "readOnly": True})
    if p.gpus > 0:
        # NCCL and the engines' worker processes share tensors through /dev/shm.
        volumes.append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": opts.shm_size}}
        )
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    for i, (path, _content) in enumerate(p.files):
        if i == 0:
            volumes.append({"name": "generated", "configMap": {"name": f"{p.name}-files"}})
        mounts.append(
            {"name": "generated", "mountPath": path, "subPath": _cm_key(i, path), "readOnly": True}
        )
    return volumes, mounts


def _cm_key(i: int, path: str) -> str:
    import re

    base = re.sub(r"[^-._a-zA-Z0-9]", "-", path.rsplit("/", 1)[-1]) or "file"
    return f"{i}-{base}"


def _post_start(p: Prepared, budget_s: float) -> dict | None:
    if not p.actions:
        return None
    tries = max(1, math.ceil(budget_s / ACTION_RETRY_S))
    parts = []
    for _name, argv, env in p.actions:
        assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        cmd = f"{assign} {shlex.join(argv)}" if assign else shlex.join(argv)
        parts.append(
            f'n=0; until {cmd}; do n=$((n+1)); [ "$n" -ge {tries} ] && exit 1; '
            f"sleep {ACTION_RETRY_S}; done"
        )
    return {"postStart": {"exec": {"command": ["/bin/sh", "-c", "; ".join(parts)]}}}


def _container(p: Prepared, opts: ExportOptions, argv: list[str], serving: bool) -> dict:
    c: dict = {
        "name": "server" if serving else "worker",
        "image": p.image,
        "command": argv[:1],
        "args": argv[1:],
    }
    if serving:
        c["ports"] = [{"name": "http", "containerPort": p.port, "protocol": "TCP"}]
    env = _env(p, opts)
    if env:
        c["env"] = env
    if p.gpus > 0:
        per_pod = p.gpus // max(1, opts.nodes)
        c["resources"] = {
            "limits": {"nvidia.com/gpu": str(per_pod)},
            "requests": {"nvidia.com/gpu": str(per_pod)},
        }
    _volumes, mounts = _volumes_and_mounts(p, opts)
    c["volumeMounts"] = mounts
    if serving:
        c["startupProbe"] = _probe(
            p, STARTUP_PERIOD_S, startup_failures(p.start_budget_s, STARTUP_PERIOD_S), 5
        )
        c["readinessProbe"] = _probe(p, 5, 3, 5)
        c["livenessProbe"] = _probe(p, 15, 4, 10)
        hook = _post_start(p, p.start_budget_s)
        if hook:
            c["lifecycle"] = hook
    return c


def _pod_spec(p: Prepared, opts: ExportOptions, container: dict) -> dict:
    volumes, _mounts = _volumes_and_mounts(p, opts)
    return {
        "terminationGracePeriodSeconds": math.ceil(p.grace_s),
        "containers": [container],
        "volumes": volumes,
    }


def _deployment(p: Prepared, opts: ExportOptions) -> dict:
    selector = {"app.kubernetes.io/name": p.name, "app.kubernetes.io/component": "llm-server"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(p, opts),
        "spec": {
            "replicas": opts.replicas,
            # GPUs and a ReadWriteOnce cache: a rolling update would wait for resources
            # the old pod holds. Recreate stops the old pod first.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": _labels(p)},
                "spec": _pod_spec(p, opts, _container(p, opts, p.argv, serving=True)),
            },
        },
    }


def worker_argv(argv: list[str]) -> list[str]:
    """The leader's argv with this pod's rank and no API server (vLLM --headless)."""
    out = list(argv)
    i = out.index("--node-rank")
    out[i + 1] = "$(LWS_WORKER_INDEX)"
    return [*out, "--headless"]


def _lws(p: Prepared, opts: ExportOptions) -> dict:
    leader_labels = {**_labels(p), "llmctl.dev/role": "leader"}
    worker_labels = {**_labels(p), "llmctl.dev/role": "worker"}
    return {
        "apiVersion": LWS_API,
        "kind": "LeaderWorkerSet",
        "metadata": _meta(p, opts),
        "spec": {
            "replicas": opts.replicas,
            "leaderWorkerTemplate": {
                "size": opts.nodes,
                # One rank gone means the whole tensor/pipeline group is broken.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {
                    "metadata": {"labels": leader_labels},
                    "spec": _pod_spec(p, opts, _container(p, opts, p.argv, serving=True)),
                },
                "workerTemplate": {
                    "metadata": {"labels": worker_labels},
                    "spec": _pod_spec(
                        p, opts, _container(p, opts, worker_argv(p.argv), serving=False)
                    ),
                },
            },
        },
    }


def _service(p: Prepared, opts: ExportOptions) -> dict:
    if opts.nodes > 1:
        selector = {LWS_NAME_LABEL: p.name, "llmctl.dev/role": "leader"}
    else:
        selector = {"app.kubernetes.io/name": p.name, "app.kubernetes.io/component": "llm-server"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(p, opts),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": p.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _pvc(p: Prepared, opts: ExportOptions) -> dict:
    shared = opts.replicas * opts.nodes > 1
    spec: dict = {
        "accessModes": ["ReadWriteMany" if shared else "ReadWriteOnce"],
        "resources": {"requests": {"storage": opts.cache_size}},
    }
    if opts.storage_class:
        spec["storageClassName"] = opts.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(p, opts, f"{p.name}-model-cache"),
        "spec": spec,
    }


def _configmap(p: Prepared, opts: ExportOptions) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(p, opts, f"{p.name}-files"),
        "data": {_cm_key(i, path): content for i, (path, content) in enumerate(p.files)},
    }
