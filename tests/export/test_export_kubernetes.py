"""Kubernetes export: every core manifest is valid against the official schemas of a
recent Kubernetes (kubernetes-validate, strict: unknown fields fail), the LeaderWorkerSet
against its own CRD schema (vendored, source and commit in the file), and every server
container runs exactly the argv `llmctl render` shows for the same profile."""

from __future__ import annotations

import json

import pytest
from exporthelp import (
    DATA,
    ENVIRON,
    EXAMPLES,
    MULTINODE,
    NO_DEFAULT_IMAGE,
    PROFILES,
    has_default_image,
    render_json,
    same_profile,
)

from llmdeploy_cli.export import common, kubernetes

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
K8S_VERSION = kv.latest_version()
LWS_VARS = {"LWS_LEADER_ADDRESS", "LWS_WORKER_INDEX"}  # injected by the LWS controller


def _prepared(path, environ=None, **kw):
    import yaml

    backend = yaml.safe_load(path.read_text())["backend"]
    image = None if has_default_image(backend) else NO_DEFAULT_IMAGE
    opts = common.ExportOptions(image=image, **kw)
    return common.prepare(path, "kubernetes", opts, environ), opts


def _strict(schema):
    """CRD schemas allow unknown fields (the API server prunes them); make them fail."""
    if isinstance(schema, dict):
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema = {**schema, "additionalProperties": False}
        return {k: _strict(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def lws_schema():
    doc = json.loads((DATA / "lws-v1-openapi-schema.json").read_text())
    assert doc["commit"] and "kubernetes-sigs/lws" in doc["source"]
    return _strict(doc["openAPIV3Schema"])


def _validate(objs, lws_schema):
    import jsonschema

    for obj in objs:
        if obj["kind"] == "LeaderWorkerSet":
            jsonschema.validate(obj, lws_schema)
        else:
            kv.validate(obj, K8S_VERSION, strict=True)


VARIANTS = [
    {},
    {"cache": "hostpath", "host_path": "/srv/models"},
    {"replicas": 2, "namespace": "llm", "storage_class": "fast"},
]


@pytest.mark.parametrize("kw", VARIANTS, ids=["pvc", "hostpath", "replicas"])
@pytest.mark.parametrize("path", [*EXAMPLES, MULTINODE], ids=lambda p: p.stem)
def test_manifests_are_valid(path, kw, lws_schema):
    p, opts = _prepared(path, ENVIRON, engine_version="0.33.0" if "vllm" in path.stem else None)
    _validate(kubernetes.manifests(p, opts), lws_schema)


def test_leaderworkerset_is_valid_and_uses_vllm_multinode_flags(lws_schema):
    p, opts = _prepared(MULTINODE, ENVIRON, nodes=2)
    objs = kubernetes.manifests(p, opts)
    _validate(objs, lws_schema)
    lws = next(o for o in objs if o["kind"] == "LeaderWorkerSet")
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    assert tmpl["size"] == 2
    leader = tmpl["leaderTemplate"]["spec"]["containers"][0]
    worker = tmpl["workerTemplate"]["spec"]["containers"][0]
    args = leader["args"]
    assert args[args.index("--nnodes") + 1] == "2"
    assert args[args.index("--node-rank") + 1] == "0"
    assert args[args.index("--master-addr") + 1] == "$(LWS_LEADER_ADDRESS)"
    wargs = worker["args"]
    assert wargs[wargs.index("--node-rank") + 1] == "$(LWS_WORKER_INDEX)"
    assert wargs[-1] == "--headless" and "--headless" not in args
    # 16 GPUs (TP 8 x PP 2) over 2 pods: 8 each; only the leader serves and is probed.
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert "readinessProbe" in leader and "readinessProbe" not in worker
    svc = next(o for o in objs if o["kind"] == "Service")
    assert svc["spec"]["selector"]["llmctl.dev/role"] == "leader"


def test_invalid_manifest_is_caught(lws_schema):
    """The validators really are strict: an unknown field fails."""
    p, opts = _prepared(EXAMPLES[0], ENVIRON)
    dep = next(o for o in kubernetes.manifests(p, opts) if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, K8S_VERSION, strict=True)
    p, opts = _prepared(MULTINODE, ENVIRON, nodes=2)
    lws = next(o for o in kubernetes.manifests(p, opts) if o["kind"] == "LeaderWorkerSet")
    lws["spec"]["leaderWorkerTemplate"]["sise"] = 2
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(lws, lws_schema)


def _containers(objs):
    for o in objs:
        if o["kind"] == "Deployment":
            yield "server", o["spec"]["template"]["spec"]["containers"][0]
        elif o["kind"] == "LeaderWorkerSet":
            t = o["spec"]["leaderWorkerTemplate"]
            yield "leader", t["leaderTemplate"]["spec"]["containers"][0]
            yield "worker", t["workerTemplate"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    "path,nodes",
    [(p, 1) for p in EXAMPLES] + [(MULTINODE, 1), (MULTINODE, 2)],
    ids=lambda x: getattr(x, "stem", str(x)),
)
def test_container_runs_what_render_shows(path, nodes, tmp_path, monkeypatch, capsys):
    """command + args == `llmctl render --json` argv of the same profile (host 0.0.0.0);
    a secret render shows as *** is $(VAR) here, VAR coming from a secretKeyRef; the env
    is render's env, secrets by reference."""
    from exporthelp import ROOT

    monkeypatch.setenv("LLMCTL_DEMO_MODEL", str(ROOT / ".cache" / "tiny-model"))
    monkeypatch.setenv("LLMCTL_API_KEY", "sk-test-not-a-real-key")
    rendered = render_json(same_profile(path, nodes=nodes), tmp_path, path.name, capsys)
    server = rendered["steps"][0]
    p, opts = _prepared(path, nodes=nodes)
    for role, c in _containers(kubernetes.manifests(p, opts)):
        argv = c["command"] + c["args"]
        want = list(server["argv"])
        if role == "worker":
            want = kubernetes.worker_argv(want)
        env = {e["name"]: e for e in c.get("env", [])}
        assert len(argv) == len(want)
        for got, exp in zip(argv, want, strict=True):
            if exp == "***":
                assert got.startswith("$(") and got.endswith(")")
                assert "secretKeyRef" in env[got[2:-1]]["valueFrom"]
            else:
                assert got == exp
        flag_secrets = {a[2:-1] for a in argv if a.startswith("$(")} - LWS_VARS
        assert set(env) == set(server["env"]) | flag_secrets
        for name, value in server["env"].items():
            if value == "***":
                assert "secretKeyRef" in env[name]["valueFrom"]
            else:
                assert env[name]["value"] == value
        assert "sk-test-not-a-real-key" not in json.dumps(c)


def test_probes_follow_the_backend_readiness():
    p, opts = _prepared(PROFILES / "vllm-qwen2.5-1.5b.yml", ENVIRON)
    c = dict(_containers(kubernetes.manifests(p, opts)))["server"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # vLLM defaults: 1800 s start + 300 s load, polled every 10 s.
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 2100
    ollama, opts = _prepared(PROFILES / "ollama-qwen2.5.yml", ENVIRON)
    c = dict(_containers(kubernetes.manifests(ollama, opts)))["server"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/"
    assert c["lifecycle"]["postStart"]["exec"]["command"][:2] == ["/bin/sh", "-c"]


def test_secrets_are_references_never_values():
    environ = {**ENVIRON, "LLMCTL_API_KEY": "sk-live-abcdef", "HF_TOKEN": "hf_live_abcdef"}
    p, opts = _prepared(MULTINODE, environ, nodes=2)
    text = json.dumps(kubernetes.manifests(p, opts))
    for value in ("sk-live-abcdef", "hf_live_abcdef", "literal-in-profile-secret"):
        assert value not in text
    assert "llmctl-export-secret" not in text  # no sentinel either
    keys = {s.source for s in p.secret_env}
    assert keys == {"LLMCTL_API_KEY", "HF_TOKEN", "WANDB_API_KEY"}


@pytest.mark.parametrize(
    "version,image,noted",
    [
        ("0.17.1", "vllm/vllm-openai:v0.17.1", False),  # the flags of 0.17.1, its image
        ("0.33.0", "vllm/vllm-openai:v0.33.0", False),
        ("0.18.0.dev12+g1a2b3c", "vllm/vllm-openai:v0.33.0", True),  # no such tag
    ],
)
def test_default_image_is_the_release_the_command_was_rendered_for(version, image, noted):
    p, _ = _prepared(PROFILES / "vllm-qwen2.5-1.5b.yml", ENVIRON, engine_version=version)
    assert p.image == image
    assert any("has no release image tag" in n for n in p.notes) is noted


@pytest.mark.parametrize(
    "options, step",
    [
        ("", "launch"),  # the key travels as --api-key
        ("  login_user_env: XI_USER\n  login_password_env: XI_PASSWORD\n", "login"),
    ],
)
def test_xinference_with_auth_is_refused_not_exported_broken(tmp_path, options, step):
    """A postStart hook would need the key or password in the manifest; without it the hook
    would retry a refused launch forever. Export refuses, naming the step and the way out."""
    p = tmp_path / "x.yml"
    p.write_text(
        "name: x\nbackend: xinference\nmodel:\n  source: qwen2.5-instruct\n"
        f"server:\n  api_key_env: LLMCTL_API_KEY\noptions:\n  home: /srv/x\n{options}"
    )
    environ = {**ENVIRON, "XI_USER": "admin", "XI_PASSWORD": "pw-not-in-any-output"}
    with pytest.raises(common.ExportError) as e:
        common.prepare(p, "kubernetes", common.ExportOptions(), environ)
    assert f"step '{step}' takes a secret" in e.value.message
    assert "by hand" in e.value.hint
    assert "pw-not-in-any-output" not in e.value.message + e.value.hint
