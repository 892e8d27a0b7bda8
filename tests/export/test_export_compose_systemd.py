"""compose and systemd export: structure, the same argv and environment as render, the
compose-spec schema (vendored), and the tools' own checks (`docker compose config`,
`systemd-analyze verify`) where installed."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest
import yaml
from exporthelp import (
    ENVIRON,
    EXAMPLES,
    NO_DEFAULT_IMAGE,
    PROFILES,
    has_default_image,
    render_json,
    same_profile,
)

from llmdeploy_cli.export import export
from llmdeploy_cli.export.common import ExportError, ExportOptions


def _opts(path, **kw):
    backend = yaml.safe_load(path.read_text())["backend"]
    return ExportOptions(image=None if has_default_image(backend) else NO_DEFAULT_IMAGE, **kw)


def _compose(path, environ=ENVIRON, **kw):
    bundle = export(path, "compose", _opts(path, **kw), environ)
    files = dict(bundle.files)
    return yaml.safe_load(files["compose.yaml"]), bundle


def _have_compose() -> bool:
    if not shutil.which("docker"):
        return False
    r = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return r.returncode == 0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compose_structure(path):
    doc, _ = _compose(path)
    assert set(doc) == {"name", "services", "volumes"}
    ((name, svc),) = doc["services"].items()
    assert svc["image"] and svc["entrypoint"]
    hc = svc["healthcheck"]
    assert hc["test"][0] == "CMD" and {"interval", "timeout", "retries", "start_period"} <= set(hc)
    assert svc["volumes"][0].startswith("model-cache:")
    gpu = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    backend = yaml.safe_load(path.read_text())
    if (backend.get("resources") or {}).get("device") == "cpu":
        assert gpu is None
    else:
        assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compose_runs_what_render_shows(path, tmp_path, monkeypatch, capsys):
    from exporthelp import ROOT

    monkeypatch.setenv("LLMCTL_DEMO_MODEL", str(ROOT / ".cache" / "tiny-model"))
    server = render_json(same_profile(path), tmp_path, path.name, capsys)["steps"][0]
    doc, _ = _compose(path, environ=None)
    (svc,) = doc["services"].values()
    got = [a.replace("$$", "$") for a in svc["entrypoint"]]
    assert len(got) == len(server["argv"])
    for g, want in zip(got, server["argv"], strict=True):
        assert g.startswith("${") if want == "***" else g == want
    env = {k: v.replace("$$", "$") for k, v in (svc.get("environment") or {}).items()}
    for k, v in server["env"].items():
        assert env[k].startswith("${") if v == "***" else env[k] == v


def test_compose_secret_is_interpolated_never_written():
    environ = {**ENVIRON, "LLMCTL_API_KEY": "sk-live-abcdef"}
    doc, bundle = _compose(PROFILES / "vllm-qwen2.5-1.5b.yml", environ)
    (svc,) = doc["services"].values()
    assert svc["environment"]["VLLM_API_KEY"].startswith("${LLMCTL_API_KEY:?")
    assert all("sk-live-abcdef" not in text for _, text in bundle.files)


@pytest.fixture(scope="module")
def compose_schema():
    """The compose-spec JSON schema that docker compose v2 validates every file against
    (compose-go embeds it), vendored with its source and commit: it runs where docker
    compose is not installed, as here and in CI."""
    import json

    from exporthelp import ROOT
    from jsonschema import Draft202012Validator

    doc = json.loads((ROOT / "tests" / "export" / "data" / "compose-spec.json").read_text())
    assert doc["source"].startswith("github.com/compose-spec/compose-go") and doc["commit"]
    Draft202012Validator.check_schema(doc["schema"])
    return Draft202012Validator(doc["schema"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compose_file_is_valid_against_the_compose_spec_schema(path, compose_schema):
    doc, _ = _compose(path)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in compose_schema.iter_errors(doc)
    ]
    assert not errors, errors


def test_compose_schema_check_catches_a_wrong_key(compose_schema):
    doc, _ = _compose(PROFILES / "vllm-qwen2.5-1.5b.yml")
    (svc,) = doc["services"].values()
    svc["healthcheck"]["start_interval_s"] = 5  # not a compose key
    svc["deploy"]["resources"]["reservations"]["devices"][0]["count"] = 1.5  # not an int
    where = sorted(e.absolute_path[-1] for e in compose_schema.iter_errors(doc))
    assert where == ["count", "healthcheck"]


@pytest.mark.skipif(
    not _have_compose(),
    reason="the docker compose plugin is not installed here (docker compose version fails)",
)
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_docker_compose_config_accepts_it(path, tmp_path):
    bundle = export(path, "compose", _opts(path), ENVIRON)
    for rel, text in bundle.files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "LLMCTL_API_KEY": "x"}
    r = subprocess.run(
        ["docker", "compose", "-f", str(tmp_path / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr


def _exec_start(unit: str) -> list[str]:
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    return [w.replace("$$", "$").replace("%%", "%") for w in shlex.split(line[len("ExecStart=") :])]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_systemd_unit_runs_what_render_shows(path, tmp_path, monkeypatch, capsys):
    from exporthelp import ROOT

    monkeypatch.setenv("LLMCTL_DEMO_MODEL", str(ROOT / ".cache" / "tiny-model"))
    data = same_profile(path, bind_all=False)
    server = render_json(data, tmp_path, path.name, capsys, container=False)["steps"][0]
    bundle = export(path, "systemd", _opts(path), None)
    files = dict(bundle.files)
    unit = next(text for rel, text in files.items() if rel.endswith(".service"))
    for key in ("Restart=on-failure", "KillMode=control-group", "[Install]"):
        assert key in unit
    got = _exec_start(unit)
    assert len(got) == len(server["argv"])
    for g, want in zip(got, server["argv"], strict=True):
        assert g.startswith("${") if want == "***" else g == want
    envs = [x for x in unit.splitlines() if x.startswith("Environment=")]
    plain = {k: v for k, v in server["env"].items() if v != "***"}
    assert len(envs) == len(plain)
    secret = [k for k, v in server["env"].items() if v == "***"]
    if secret or any(w.startswith("${") for w in got):
        assert "EnvironmentFile=" in unit
        example = next(text for rel, text in files.items() if rel.endswith(".env.example"))
        for k in secret:
            assert f"\n{k}=\n" in example


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    """systemd's own checker; the engine is a stand-in executable so the check can find it."""
    exe = tmp_path / "bin" / "vllm"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    text = (PROFILES / "vllm-qwen2.5-1.5b.yml").read_text()
    text = text.replace("runtime:\n", f"runtime:\n  executable: {exe}\n")
    text = text.replace("name: vllm-qwen2.5-1.5b", "name: verify-me")
    prof = tmp_path / "p.yml"
    prof.write_text(text + "env:\n  NOTE: 'has spaces, % and $ signs'\n")
    opts = ExportOptions(env_file=str(tmp_path / "verify-me.env"))
    bundle = export(prof, "systemd", opts, ENVIRON)
    for rel, content in bundle.files:
        (tmp_path / rel).write_text(content)
    (tmp_path / "verify-me.env").write_text("VLLM_API_KEY=x\n")
    unit = tmp_path / "llmctl-verify-me.service"
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "verify-me" not in r.stderr, r.stderr  # no complaint about our unit


def test_single_machine_targets_refuse_nodes():
    for target in ("compose", "systemd"):
        with pytest.raises(ExportError, match="--nodes"):
            export(PROFILES / "vllm-qwen3-1.7b.yml", target, ExportOptions(nodes=2), ENVIRON)
