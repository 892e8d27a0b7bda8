"""pack / unpack with the tiny model; pull's download cannot run here (no network)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from llmdeploy_cli.cli.app import main
from llmdeploy_cli.errors import LlmctlError, PreflightError, UsageError
from llmdeploy_cli.models.transfer import pack_model, pull_model, unpack_model
from llmdeploy_cli.models.verify import verify_model_files
from llmdeploy_cli.profile import load_profile


@pytest.fixture
def profile_file(write_profile, tiny_model):
    return write_profile(
        f"""
        # a comment
        name: tiny
        backend: transformers
        model:
          source: {tiny_model}
        hub:
          endpoint: http://mirror.invalid
        """
    )


def test_pack_unpack_roundtrip(profile_file, tiny_model, tmp_path):
    archive = tmp_path / "m.tar"
    res = pack_model(load_profile(profile_file), archive)
    assert res["files"] >= 4 and archive.is_file()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("llmctl-manifest.json").read())
    assert "model/config.json" in names and "profile.yml" in names
    assert all(len(e["sha256"]) == 64 for e in manifest["files"])

    out = unpack_model(archive, tmp_path / "dst")
    assert out["verified"]
    model = tmp_path / "dst" / "model"
    assert (model / "model.safetensors").read_bytes() == (
        tiny_model / "model.safetensors"
    ).read_bytes()
    prof = load_profile(out["profile"])
    assert prof.offline is True
    assert prof.model_path() == model
    assert prof.hub.endpoint is None
    (check,) = verify_model_files(model)
    assert check.level == "pass"
    (model / "config.json").write_text("{}")
    (check,) = verify_model_files(model)
    assert check.level == "fail" and "config.json" in check.message


def _tar_with(tmp_path, name: str, data: bytes = b"x", kind=tarfile.REGTYPE) -> tarfile.TarFile:
    p = tmp_path / "evil.tar"
    with tarfile.open(p, "w") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return p


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/path", "model/../../x"])
def test_unpack_refuses_path_traversal(tmp_path, name):
    with pytest.raises(LlmctlError, match="unsafe path"):
        unpack_model(_tar_with(tmp_path, name), tmp_path / "dst")
    assert not (tmp_path / "escape.txt").exists()


def test_unpack_refuses_links(tmp_path):
    with pytest.raises(LlmctlError, match="link"):
        unpack_model(_tar_with(tmp_path, "model/x", kind=tarfile.SYMTYPE), tmp_path / "dst")


def test_unpack_detects_a_damaged_file(profile_file, tmp_path):
    archive = tmp_path / "m.tar"
    pack_model(load_profile(profile_file), archive)
    data = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        m = tar.getmember("model/config.json")
        off = m.offset_data
    data[off] ^= 0xFF
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(LlmctlError, match="sha256"):
        unpack_model(bad, tmp_path / "dst")
    assert not (tmp_path / "dst" / "model" / "config.json").exists()


def test_pack_refuses_incomplete_model(write_profile, tmp_path):
    d = tmp_path / "half"
    d.mkdir()
    (d / "config.json").write_text("{}")
    p = write_profile(f"name: h\nbackend: transformers\nmodel: {{source: {d}}}\n")
    with pytest.raises(PreflightError, match="not a complete model"):
        pack_model(load_profile(p), tmp_path / "x.tar")


def test_cli_pack_unpack(profile_file, tmp_path, capsys):
    archive = tmp_path / "cli.tar"
    assert main(["pack", str(profile_file), "-o", str(archive)]) == 0
    assert main(["unpack", str(archive), "--to", str(tmp_path / "u"), "--json"]) == 0
    text = capsys.readouterr().out
    doc = json.loads(text[text.index("{") :])
    assert doc["verified"] and doc["schema_version"] == 1


def test_pull_refuses_local_path_and_ollama(profile_file, write_profile):
    with pytest.raises(UsageError, match="local path"):
        pull_model(load_profile(profile_file))
    p = write_profile("name: o\nbackend: ollama\nmodel: {source: 'qwen2.5:0.5b'}\n", "o.yml")
    with pytest.raises(UsageError, match="Ollama"):
        pull_model(load_profile(p))


def test_pull_with_hf_hub_offline_in_the_shell(write_profile):
    p = write_profile("name: o\nbackend: vllm\nmodel: {source: Org/M}\noffline: true\n", "o.yml")
    notes = []
    with pytest.raises(PreflightError, match="HF_HUB_OFFLINE"):
        pull_model(load_profile(p), progress=notes.append, environ={"HF_HUB_OFFLINE": "1"})
    assert any("offline: true applies to the engine" in n for n in notes)


def test_pull_download_itself(write_profile):
    pytest.skip(
        "the download itself cannot run here: this machine has no network and no model hub; "
        "pull_model hands the hub id, revision, token, cache dir and HF_ENDPOINT mirror to "
        "huggingface_hub.snapshot_download, which resumes interrupted downloads"
    )


def test_pull_hands_the_profile_to_snapshot_download(write_profile, monkeypatch, tmp_path):
    """What pull asks huggingface_hub for (the download itself cannot run here)."""
    import huggingface_hub

    seen = {}

    def fake(repo_id, **kw):
        seen.update(kw, repo_id=repo_id)
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setenv("MY_TOKEN", "hf_secret")
    p = write_profile(
        f"""
        name: o
        backend: vllm
        model: {{source: Org/M, revision: v2}}
        hub: {{endpoint: http://mirror.invalid, token_env: MY_TOKEN, cache_dir: {tmp_path}}}
        """
    )
    path = pull_model(load_profile(p), config_only=True)
    assert path == tmp_path / "snap"
    assert seen["repo_id"] == "Org/M" and seen["revision"] == "v2"
    assert seen["endpoint"] == "http://mirror.invalid" and seen["token"] == "hf_secret"
    assert seen["cache_dir"] == str(tmp_path / "hub")
    assert "config.json" in seen["allow_patterns"]


def test_pull_downloads_into_the_cache_the_engine_reads(write_profile, monkeypatch, tmp_path):
    """The profile's `env:` moves the engine's Hugging Face cache; pull follows it (before,
    it downloaded into the shell's cache and an offline serve then found nothing)."""
    import huggingface_hub

    seen = {}
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo_id, **kw: seen.update(kw) or "x"
    )
    shell = {"HF_HOME": str(tmp_path / "shell-home")}
    hc, home, cd, e = (tmp_path / n for n in ("hc", "home", "cd", "e"))
    cases = [
        (f"env: {{HF_HUB_CACHE: {hc}}}", hc),
        (f"env: {{HF_HOME: {home}}}", home / "hub"),
        # env: is applied after hub.cache_dir, as build() does
        (f"hub: {{cache_dir: {cd}}}\nenv: {{HF_HOME: {e}}}", e / "hub"),
        (f"hub: {{cache_dir: {cd}}}", cd / "hub"),
        ("", tmp_path / "shell-home" / "hub"),
    ]
    for extra, want in cases:
        p = write_profile(f"name: o\nbackend: vllm\nmodel: {{source: Org/M}}\n{extra}\n")
        pull_model(load_profile(p), environ=shell)
        assert seen["cache_dir"] == str(want), extra


def test_pull_without_the_package_says_what_to_install(write_profile, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    monkeypatch.setitem(sys.modules, "modelscope", None)
    p = write_profile("name: o\nbackend: vllm\nmodel: {source: Org/M}\n")
    with pytest.raises(LlmctlError, match="huggingface_hub is not installed"):
        pull_model(load_profile(p), environ={})
    p = write_profile("name: o\nbackend: vllm\nmodel: {source: Org/M}\nhub: {source: modelscope}\n")
    with pytest.raises(LlmctlError, match="modelscope"):
        pull_model(load_profile(p), environ={})


def test_pull_network_failure_is_unreachable(write_profile, monkeypatch):
    import huggingface_hub

    from llmdeploy_cli.errors import UnreachableError

    def fail(repo_id, **kw):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    p = write_profile("name: o\nbackend: vllm\nmodel: {source: Org/M}\n")
    with pytest.raises(UnreachableError, match="cannot reach"):
        pull_model(load_profile(p), environ={})
