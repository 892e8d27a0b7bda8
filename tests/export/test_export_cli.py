"""`llmctl export`: stdout, -o DIR, --json, refusals with exit 2, no secret in any output."""

from __future__ import annotations

import json

import yaml
from exporthelp import MULTINODE, PROFILES

from llmdeploy_cli.cli.app import main

VLLM = PROFILES / "vllm-qwen2.5-1.5b.yml"


def test_stdout_is_the_manifests_and_notes_go_to_stderr(capsys, monkeypatch):
    monkeypatch.setenv("LLMCTL_API_KEY", "sk-cli-secret-value")
    assert main(["export", str(VLLM), "--to", "kubernetes"]) == 0
    cap = capsys.readouterr()
    docs = list(yaml.safe_load_all(cap.out))
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "Deployment", "Service"]
    assert "0.0.0.0" in cap.err and "kubectl create secret generic" in cap.err
    assert "sk-cli-secret-value" not in cap.out + cap.err


def test_output_dir_and_json(tmp_path, capsys):
    out = tmp_path / "k8s"
    assert (
        main(
            [
                "export",
                str(MULTINODE),
                "--to",
                "kubernetes",
                "--nodes",
                "2",
                "-o",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["target"] == "kubernetes"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["leaderworkerset.yaml", "persistentvolumeclaim.yaml", "service.yaml"]
    assert sorted(doc["written"]) == sorted(str(out / n) for n in names)
    assert any("LeaderWorkerSet" in n for n in doc["notes"])


def test_systemd_and_compose_to_a_directory(tmp_path, capsys):
    assert main(["export", str(VLLM), "--to", "systemd", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "llmctl-vllm-qwen2-5-1-5b.service").exists()
    assert (tmp_path / "vllm-qwen2-5-1-5b.env.example").read_text().endswith("VLLM_API_KEY=\n")
    assert (
        main(
            [
                "export",
                str(PROFILES / "ollama-gguf.yml"),
                "--to",
                "compose",
                "-o",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert (tmp_path / "c" / "compose.yaml").exists()
    assert (tmp_path / "c" / "files" / "0-Modelfile").read_text().startswith("#")


def _error(capsys) -> dict:
    return json.loads(capsys.readouterr().out)["error"]


def test_refusals_exit_2_with_a_reason(capsys, write_profile):
    assert (
        main(
            [
                "export",
                str(PROFILES / "transformers-qwen.yml"),
                "--to",
                "kubernetes",
                "--nodes",
                "2",
                "--image",
                "x:1",
                "--json",
            ]
        )
        == 2
    )
    err = _error(capsys)
    assert "multi-node" in err["hint"] or "multi-node" in err["message"]
    assert (
        main(["export", str(PROFILES / "transformers-qwen.yml"), "--to", "compose", "--json"]) == 2
    )
    assert "--image" in _error(capsys)["hint"]
    assert main(["export", str(VLLM), "--to", "kubernetes", "--nodes", "3", "--json"]) == 2
    assert "split evenly" in _error(capsys)["message"]
    assert main(["export", str(VLLM), "--to", "nomad"]) == 2
    p = write_profile(
        """
        name: svc
        backend: ollama
        model: {source: "qwen2.5:0.5b"}
        server: {managed: false}
        """
    )
    assert main(["export", str(p), "--to", "kubernetes", "--json"]) == 2
    assert "managed" in _error(capsys)["message"]


def test_multinode_flags_in_the_profile_clash(capsys, write_profile, tmp_path):
    text = MULTINODE.read_text() + "options:\n  nnodes: 2\n"
    p = tmp_path / "mn.yml"
    p.write_text(text)
    assert main(["export", str(p), "--to", "kubernetes", "--nodes", "2", "--json"]) == 2
    assert "nnodes" in _error(capsys)["message"]


def test_a_secret_interpolated_into_argv_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCTL_API_KEY", "sk-abcdefgh")
    p = tmp_path / "leak.yml"
    p.write_text(
        "name: leak\nbackend: vllm\nmodel: {source: a/b}\n"
        "server: {api_key_env: LLMCTL_API_KEY}\n"
        'extra_args: ["--api-key", "${LLMCTL_API_KEY}"]\n'
    )
    assert main(["export", str(p), "--to", "kubernetes", "--json"]) == 2
    out = capsys.readouterr().out
    assert "a secret" in json.loads(out)["error"]["message"] and "sk-abcdefgh" not in out


def test_a_backend_without_a_container_needs_image_and_cache_path(capsys, monkeypatch):
    """container: NOT_SUPPORTED (declared by the backend) -> kubernetes/compose refuse with
    one line unless --image and --cache-path are given; systemd needs neither."""
    from llmdeploy_cli import registry
    from llmdeploy_cli.capabilities import NOT_SUPPORTED

    tiny = PROFILES / "llamacpp-tiny.yml"
    monkeypatch.setattr(type(registry.get("llamacpp")), "container", NOT_SUPPORTED)
    assert main(["export", str(tiny), "--to", "kubernetes"]) == 2
    err = capsys.readouterr().err
    assert "backend 'llamacpp' declares no container" in err and "--cache-path" in err
    assert "Traceback" not in err
    args = ["--image", "my/llama:1", "--cache-path", "/models-cache"]
    assert main(["export", str(tiny), "--to", "kubernetes", *args]) == 0
    out = capsys.readouterr().out
    assert "image: my/llama:1" in out and "mountPath: /models-cache" in out
    assert main(["export", str(tiny), "--to", "systemd"]) == 0
    assert "ExecStart=" in capsys.readouterr().out
