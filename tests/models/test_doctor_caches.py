"""doctor reports a hub id or pull name present only where the profile's engine will look
for it: its own hub's cache, hub.cache_dir as build() hands it (HF_HOME, relative to the
profile's folder), the cache variables of the profile's env; Ollama's store from the
profile; and the folders the engine must write can be written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmdeploy_cli.models.doctor import run_doctor
from llmdeploy_cli.resolve import resolve
from tests.models.test_models_inspect import write_ollama_store

REPO = "Org/Tiny-Chat"


def no_gpu():
    return [], "nvidia-smi not found"


def _by(report):
    return {c.check: c for c in report.checks}


def _hf_copy(cache: Path, model: Path, repo: str = REPO) -> Path:
    """A Hugging Face hub cache entry (models--org--name/snapshots/<commit>, refs/main)."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / ("c" * 40)
    shutil.copytree(model, snap)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("c" * 40)
    return snap


def _ms_copy(cache: Path, model: Path, repo: str = REPO) -> Path:
    org, name = repo.split("/")
    folder = cache / "models" / org / name
    shutil.copytree(model, folder)
    return folder


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home: no cache variable of this machine leaks into the lookup."""
    h = tmp_path / "home"
    h.mkdir()
    for var in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    for var in ("MODELSCOPE_CACHE", "XINFERENCE_HOME", "OLLAMA_MODELS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(h))
    return h


def test_a_modelscope_only_copy_is_no_use_to_an_engine_reading_the_hf_cache(
    write_profile, tiny_model, home
):
    folder = _ms_copy(home / ".cache" / "modelscope" / "hub", tiny_model)
    p = write_profile(f"name: ms\nbackend: transformers\nmodel: {{source: {REPO}}}\n")
    files = _by(run_doctor(p, environ={"HOME": str(home)}, gpu_query=no_gpu))["model.files"]
    assert files.level == "warn", files
    assert "ModelScope cache" in files.message and "does not look there" in files.message
    assert str(home / ".cache" / "huggingface" / "hub") in files.message
    assert f"model.source: {folder}" in files.fix  # serve hands the engine that folder

    offline = write_profile(
        f"name: ms\nbackend: transformers\nmodel: {{source: {REPO}}}\noffline: true\n", "o.yml"
    )
    files = _by(run_doctor(offline, environ={"HOME": str(home)}, gpu_query=no_gpu))["model.files"]
    assert files.level == "fail"


def test_an_engine_with_modelscope_reads_the_modelscope_cache(write_profile, tiny_model, home):
    _ms_copy(home / "ms", tiny_model)
    p = write_profile(
        f"""
        name: ms
        backend: vllm
        model: {{source: {REPO}}}
        hub: {{source: modelscope}}
        env: {{MODELSCOPE_CACHE: {home / "ms"}}}
        """
    )
    by = _by(run_doctor(p, environ={"HOME": str(home)}, gpu_query=no_gpu))
    assert by["model.files"].level == "pass", by["model.files"]
    assert by["model.cache"].level == "pass"
    assert "MODELSCOPE_CACHE from the profile" in by["model.cache"].message


def test_hub_cache_dir_is_hf_home_as_build_hands_it(write_profile, tiny_model, home):
    """hub.cache_dir is HF_HOME for the engine: it reads CACHE_DIR/hub, so a hub cache laid
    out in CACHE_DIR itself is not found there (and doctor says where it is)."""
    cache = home / "models"
    wrong = _hf_copy(cache, tiny_model)  # models/models--Org--Tiny-Chat: not models/hub/...
    p = write_profile(
        f"name: c\nbackend: vllm\nmodel: {{source: {REPO}}}\nhub: {{cache_dir: {cache}}}\n"
    )
    files = _by(run_doctor(p, environ={"HOME": str(home)}, gpu_query=no_gpu))["model.files"]
    assert files.level == "warn" and str(wrong) in files.message
    assert f"{cache / 'hub'} (Hugging Face cache, HF_HOME from the profile)" in files.message


def test_relative_cache_dir_is_the_profiles_folder(
    write_profile, tiny_model, home, tmp_path, monkeypatch
):
    _hf_copy(tmp_path / "cache" / "hub", tiny_model)
    p = write_profile(
        f"name: c\nbackend: vllm\nmodel: {{source: {REPO}}}\nhub: {{cache_dir: ./cache}}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where llmctl runs does not matter
    r = resolve(p, {"HOME": str(home)})
    assert r.plan.server.command.env["HF_HOME"] == str(tmp_path / "cache")
    by = _by(run_doctor(p, environ={"HOME": str(home)}, gpu_query=no_gpu))
    assert by["model.files"].level == "pass", by["model.files"]


def test_cache_variables_of_the_profiles_env_win(write_profile, tiny_model, home):
    _hf_copy(home / "hf-hub", tiny_model)
    _hf_copy(home / "other", tiny_model)
    p = write_profile(
        f"name: e\nbackend: vllm\nmodel: {{source: {REPO}}}\n"
        f"env: {{HF_HUB_CACHE: {home / 'hf-hub'}}}\n"
    )
    by = _by(
        run_doctor(
            p, environ={"HOME": str(home), "HF_HUB_CACHE": str(home / "x")}, gpu_query=no_gpu
        )
    )
    assert by["model.files"].level == "pass"
    assert "HF_HUB_CACHE from the profile" in by["model.cache"].message
    assert str(home / "hf-hub") in by["model.cache"].message


def test_ollama_store_from_the_profile_and_its_default(write_profile, home, tmp_path):
    write_ollama_store(tmp_path / "store")
    p = write_profile(
        "name: o\nbackend: ollama\nmodel: {source: 'qwen2.5:0.5b'}\n"
        f"hub: {{cache_dir: {tmp_path / 'store'}}}\n"
    )
    by = _by(run_doctor(p, environ={"HOME": str(home)}, gpu_query=no_gpu))
    assert by["model.files"].level == "pass", by["model.files"]
    assert "OLLAMA_MODELS from the profile" in by["model.cache"].message
    # the same model in the user's default store is not where this server looks
    shutil.rmtree(tmp_path / "store")
    (tmp_path / "store").mkdir()
    write_ollama_store(home / ".ollama" / "models")
    files = _by(run_doctor(p, environ={"HOME": str(home)}, gpu_query=no_gpu))["model.files"]
    assert files.level == "warn" and "does not look there" in files.message
    assert "hub.cache_dir" in files.fix
    # without a store in the profile, the default one is the engine's
    q = write_profile("name: o\nbackend: ollama\nmodel: {source: 'qwen2.5:0.5b'}\n", "q.yml")
    by = _by(run_doctor(q, environ={"HOME": str(home)}, gpu_query=no_gpu))
    assert by["model.files"].level == "pass" and "the default" in by["model.cache"].message


def test_the_service_store_is_declared_by_the_backend():
    from llmdeploy_cli import registry

    hub = registry.get("ollama").hub
    assert hub.service_store == "/usr/share/ollama/.ollama/models"
    assert hub.store_default == "~/.ollama/models"


def test_folders_the_engine_writes_are_checked(write_profile, home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    p = write_profile(
        "name: o\nbackend: ollama\nmodel: {source: 'qwen2.5:0.5b'}\n"
        f"hub: {{cache_dir: {blocker / 'models'}}}\n"
    )
    writes = [
        c
        for c in run_doctor(p, environ={"HOME": str(home)}, gpu_query=no_gpu).checks
        if c.check == "writes"
    ]
    assert writes and writes[0].level == "fail"
    assert "OLLAMA_MODELS" in writes[0].message and "is a file" in writes[0].message
    x = write_profile(
        f"""
        name: x
        backend: xinference
        model: {{source: qwen2.5-instruct}}
        options: {{home: {blocker / "xi"}}}
        """,
        "x.yml",
    )
    writes = [
        c
        for c in run_doctor(x, environ={"HOME": str(home)}, gpu_query=no_gpu).checks
        if c.check == "writes"
    ]
    assert [w.level for w in writes][:1] == ["fail"] and "XINFERENCE_HOME" in writes[0].message


def test_a_writable_download_cache_passes(write_profile, home):
    p = write_profile(f"name: d\nbackend: vllm\nmodel: {{source: {REPO}}}\n")
    writes = [
        c
        for c in run_doctor(p, environ={"HOME": str(home)}, gpu_query=no_gpu).checks
        if c.check == "writes"
    ]
    assert [w.level for w in writes] == ["pass"]
    assert str(home / ".cache" / "huggingface" / "hub") in writes[0].message


def test_preflight_offline_reminder_follows_the_engines_lookup(write_profile, tiny_model, home):
    """serve's offline reminder is silent where the engine finds the model, and names the
    folder it reads (and the copy it will not see) where it does not."""
    from llmdeploy_cli import preflight

    p = write_profile(f"name: f\nbackend: transformers\nmodel: {{source: {REPO}}}\noffline: true\n")
    env = {"HOME": str(home)}
    _ms_copy(home / ".cache" / "modelscope" / "hub", tiny_model)
    found = preflight.problems(resolve(p, env), environ=env, check_running=False, gpu_query=no_gpu)
    (warn,) = [x for x in found if x.check == "offline"]
    assert str(home / ".cache" / "huggingface" / "hub") in warn.message
    assert "ModelScope cache" in warn.message
    _hf_copy(home / ".cache" / "huggingface" / "hub", tiny_model)
    found = preflight.problems(resolve(p, env), environ=env, check_running=False, gpu_query=no_gpu)
    assert not [x for x in found if x.check == "offline"]


def test_pull_downloads_where_the_engine_will_look(write_profile, monkeypatch, tmp_path):
    """A relative hub.cache_dir is the profile's folder for pull too (what pull asks
    huggingface_hub for; the download itself cannot run here)."""
    import huggingface_hub

    from llmdeploy_cli.models.transfer import pull_model
    from llmdeploy_cli.profile import load_profile

    seen = {}

    def fake(repo_id, **kw):
        seen.update(kw)
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    p = write_profile(
        f"name: o\nbackend: vllm\nmodel: {{source: {REPO}}}\nhub: {{cache_dir: ./c}}\n"
    )
    monkeypatch.chdir(tmp_path.parent)
    pull_model(load_profile(p), config_only=True, environ={})
    r = resolve(p, {})
    assert seen["cache_dir"] == str(tmp_path / "c" / "hub")
    assert seen["cache_dir"] == str(Path(r.plan.server.command.env["HF_HOME"]) / "hub")
