"""Engines `llmctl engine install` made are found without a runtime section (issue 18), by
`backends` (issue 19 item 4), and never by export's containers (issue 19 item 3); Ollama's
release-archive install and its version read from the binary; xllamacpp's recipe.

Installs are built as real folders (a venv-shaped tree with dist-info and executables, a
manifest) or, for Ollama, from a real .tar.zst archive served from a file:// URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from llmdeploy_cli.cli.app import main
from llmdeploy_cli.engines import store


@pytest.fixture
def engines(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "engines"
    monkeypatch.setenv("LLMCTL_ENGINES_DIR", str(d))
    return d


def fake_env(engines: Path, name: str, version: str, device: str, exes, dist=None) -> Path:
    p = engines / f"{name}-{version}-{device}"
    site = p / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    if dist:
        (site / f"{dist}-{version}.dist-info").mkdir()
    (p / "bin").mkdir()
    for exe in exes:
        (p / "bin" / exe).write_text("#!/bin/sh\nexit 0\n")
        (p / "bin" / exe).chmod(0o755)
    store.write_manifest(
        p, {"engine": name, "distribution": dist, "version": version, "device": device,
            "python": "3.11.7", "installer": "uv"},
    )  # fmt: skip
    return p


def xinference_env(engines, version="4.1.0", device="cpu") -> Path:
    return fake_env(
        engines, "xinference", version, device, ["xinference-local", "xinference"], "xinference"
    )


def write(tmp_path: Path, doc: dict, name="p.yml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def xinf_profile(tmp_path, device="cpu", **extra) -> Path:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    doc = {
        "name": "xi",
        "backend": "xinference",
        "model": {"source": str(model)},
        "options": {"model_name": "llama-2-chat", "model_size_in_billions": 7},
        **({"resources": {"device": device}} if device else {}),
        **extra,
    }
    return write(tmp_path, doc)


def render(path: Path, capsys) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(["render", "--json", str(path)]) == 0
    cap = capsys.readouterr()
    return json.loads(cap.out), cap.err


# -- a profile with no runtime section --------------------------------------------------------


def test_no_runtime_section_uses_the_newest_install_for_the_device(engines, tmp_path, capsys):
    xinference_env(engines, "4.0.2", "cpu")
    new_cpu = xinference_env(engines, "4.1.0", "cpu")
    new_cuda = xinference_env(engines, "4.1.0", "cuda")
    doc, _ = render(xinf_profile(tmp_path, "cpu"), capsys)
    assert doc["steps"][0]["argv"][0] == str(new_cpu / "bin" / "xinference-local")
    assert doc["engine_version"] == "4.1.0" and doc["version_source"].startswith("dist-info:")
    # render says which environment it uses
    assert any("engine:xinference@4.1.0:cpu" in w for w in doc["warnings"])
    assert doc["environment"] == (
        f"installed by llmctl engine install (engine:xinference@4.1.0:cpu, {new_cpu})"
    )
    doc, _ = render(xinf_profile(tmp_path, "cuda"), capsys)
    assert doc["steps"][0]["argv"][0] == str(new_cuda / "bin" / "xinference-local")


def test_auto_or_unset_device_prefers_this_machines_device(engines, tmp_path, capsys, monkeypatch):
    cpu = xinference_env(engines, "4.1.0", "cpu")
    cuda = xinference_env(engines, "4.1.0", "cuda")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no nvidia-smi: a CPU machine
    doc, _ = render(xinf_profile(tmp_path, None), capsys)
    assert doc["steps"][0]["argv"][0] == str(cpu / "bin" / "xinference-local")
    bindir = tmp_path / "gpu-bin"
    bindir.mkdir()
    (bindir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    doc, _ = render(xinf_profile(tmp_path, "auto"), capsys)
    assert doc["steps"][0]["argv"][0] == str(cuda / "bin" / "xinference-local")


def test_nothing_installed_falls_back_to_path(engines, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    doc, _ = render(xinf_profile(tmp_path, "cpu"), capsys)
    assert doc["steps"][0]["argv"][0] == "xinference-local"
    assert doc["environment"] == "PATH (xinference-local not found)"
    capsys.readouterr()
    assert main(["render", str(xinf_profile(tmp_path, "cpu"))]) == 0
    assert "xinference: environment: PATH (xinference-local not found)" in capsys.readouterr().err
    assert not any("environment:" in w for w in doc["warnings"])
    # an install for the other device is not used for an explicit device
    xinference_env(engines, "4.1.0", "cuda")
    doc, _ = render(xinf_profile(tmp_path, "cpu"), capsys)
    assert doc["steps"][0]["argv"][0] == "xinference-local"


def test_a_runtime_section_wins_over_installs(engines, tmp_path, capsys):
    xinference_env(engines, "4.1.0", "cpu")
    doc, _ = render(xinf_profile(tmp_path, "cpu", runtime={"executable": "/opt/x/xl"}), capsys)
    assert doc["steps"][0]["argv"][0] == "/opt/x/xl"


def test_every_engine_finds_its_install(engines, tmp_path, capsys):
    """Infinity and transformers (CPU engines) the same way as Xinference."""
    inf = fake_env(engines, "infinity", "0.0.78", "cpu", ["infinity_emb"], "infinity-emb")
    tr = fake_env(engines, "transformers", "5.25.0", "cpu", ["transformers"], "transformers")
    model = tmp_path / "model"
    model.mkdir()
    p = write(tmp_path, {"name": "e", "backend": "infinity", "model": {"source": str(model),
              "task": "embedding"}, "resources": {"device": "cpu"}})  # fmt: skip
    doc, _ = render(p, capsys)
    assert doc["steps"][0]["argv"][0] == str(inf / "bin" / "infinity_emb")
    assert doc["engine_version"] == "0.0.78"
    p = write(tmp_path, {"name": "t", "backend": "transformers", "model": {"source": str(model)},
              "resources": {"device": "cpu"}})  # fmt: skip
    doc, _ = render(p, capsys)
    assert doc["steps"][0]["argv"][0] == str(tr / "bin" / "transformers")
    assert doc["engine_version"] == "5.25.0"


def test_llamacpp_xllamacpp_finds_the_installed_wheel(engines, tmp_path, capsys):
    env = fake_env(engines, "llamacpp", "2026.10.11549", "cpu", ["python3"], "xllamacpp")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    base = {"name": "l", "backend": "llamacpp", "model": {"source": str(gguf)},
            "resources": {"device": "cpu"}}  # fmt: skip
    doc, _ = render(write(tmp_path, {**base, "options": {"runtime": "xllamacpp"}}), capsys)
    assert doc["steps"][0]["argv"][0] == str(env / "bin" / "python3")
    assert doc["engine_version"] == "2026.10.11549"
    # llama-server (the default runtime) is not in that env: PATH, as before
    doc, _ = render(write(tmp_path, base, "q.yml"), capsys)
    assert doc["steps"][0]["argv"][0] == "llama-server"


def test_doctor_names_the_environment_and_the_install_command(engines, tmp_path, capsys):
    p = xinf_profile(tmp_path, "cpu")
    capsys.readouterr()
    main(["doctor", str(p), "--json"])
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["engine.installed"]["level"] == "fail"
    assert "llmctl engine install xinference" in checks["engine.installed"]["fix"]
    env = xinference_env(engines, "4.1.0", "cpu")
    main(["doctor", str(p), "--json"])
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["engine.installed"]["level"] == "pass"
    assert "engine:xinference@4.1.0:cpu" in checks["engine.installed"]["message"]
    assert str(env) in checks["engine.installed"]["message"]


# -- llmctl backends (issue 19 item 4) -------------------------------------------------------


def test_backends_shows_engines_installed_by_llmctl(engines, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    capsys.readouterr()
    assert main(["backends", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["backends"]}
    assert rows["xinference"]["installed"] is False
    env = xinference_env(engines, "4.1.0", "cpu")
    assert main(["backends", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["backends"]}
    assert rows["xinference"]["installed"] is True
    assert rows["xinference"]["engine_version"] == "4.1.0"
    assert rows["xinference"]["executable_path"] == str(env / "bin" / "xinference-local")
    assert rows["xinference"]["engine_installs"] == ["engine:xinference@4.1.0:cpu"]
    assert main(["backends"]) == 0
    text = capsys.readouterr().out
    assert f"4.1.0 at {env}/bin/xinference-local" in text
    assert "installed by llmctl: engine:xinference@4.1.0:cpu" in text


# -- export (issue 19 item 3) --------------------------------------------------------------------


def test_export_ignores_runtime_and_installed_envs(engines, tmp_path, capsys):
    env = fake_env(engines, "vllm", "0.33.0", "cuda", ["vllm"], "vllm")
    doc = {"name": "v", "backend": "vllm", "model": {"source": "Qwen/Qwen2.5-1.5B-Instruct"},
           "runtime": {"venv": "engine:vllm"}}  # fmt: skip
    p = write(tmp_path, doc)
    # render (this machine) runs the installed env ...
    rendered, _ = render(p, capsys)
    assert rendered["steps"][0]["argv"][0] == str(env / "bin" / "vllm")
    for target in ("kubernetes", "compose"):
        out = tmp_path / f"out-{target}"
        capsys.readouterr()
        assert main(["export", str(p), "--to", target, "--output", str(out)]) == 0
        text = "".join(f.read_text() for f in out.rglob("*") if f.is_file())
        assert str(env) not in text and str(engines) not in text, target
        assert "- vllm" in text  # the image's own executable
    # ... and so does a profile with no runtime section, never the container
    doc.pop("runtime")
    p = write(tmp_path, doc, "q.yml")
    out = tmp_path / "out-k8s-2"
    assert main(["export", str(p), "--to", "kubernetes", "--output", str(out)]) == 0
    assert str(env) not in "".join(f.read_text() for f in out.rglob("*") if f.is_file())


# -- Ollama: the version from the binary, the release-archive install ------------------------


def fake_ollama(folder: Path, version: str, *, server_running: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "ollama"
    if server_running:
        body = f'echo "ollama version is {version}"'
    else:
        body = (
            'echo "Warning: could not connect to a running Ollama instance" >&2\n'
            f'echo "Warning: client version is {version}" >&2'
        )
    # like the real one, it reports the server at OLLAMA_HOST when one answers there: llmctl
    # points it at a closed port, so only a stray OLLAMA_HOST would make it say "running"
    exe.write_text(
        '#!/bin/sh\nif [ "$1" = "-v" ]; then\n'
        'if [ "$OLLAMA_HOST" != "127.0.0.1:9" ]; then echo "ollama version is 9.9.9"; '
        "exit 0; fi\n"
        f"{body}\nexit 0\nfi\nexit 3\n"
    )
    exe.chmod(0o755)
    return exe


def ollama_profile(tmp_path: Path, **extra) -> Path:
    return write(
        tmp_path,
        {"name": "o", "backend": "ollama", "model": {"source": "qwen2.5:0.5b"}, **extra},
        "o.yml",
    )


@pytest.mark.parametrize("running", [False, True])
def test_ollama_version_is_read_from_the_binary(tmp_path, capsys, monkeypatch, running):
    fake_ollama(tmp_path / "bin", "0.31.2", server_running=running)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    doc, _ = render(ollama_profile(tmp_path), capsys)
    assert doc["engine_version"] == "0.31.2"
    assert doc["version_source"] == f"binary:{tmp_path / 'bin' / 'ollama'}"
    # without the binary: the pin, then the newest version llmctl knows (with a warning)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    doc, _ = render(ollama_profile(tmp_path, runtime={"engine_version": "0.30.0"}), capsys)
    assert doc["engine_version"] == "0.30.0" and doc["version_source"] == "profile"


def release(tmp_path: Path, version: str, arch: str, *, corrupt: bool = False) -> str:
    """A folder laid out like Ollama's release host: vV/ollama-linux-ARCH.tar.zst + sums."""
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed (the release archive is .tar.zst)")
    src = tmp_path / "src"
    fake_ollama(src / "bin", version)
    (src / "lib" / "ollama").mkdir(parents=True)
    (src / "lib" / "ollama" / "libggml-base.so").write_bytes(b"\0" * 64)
    rel = tmp_path / "releases" / f"v{version}"
    rel.mkdir(parents=True)
    tar_path = tmp_path / "ollama.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(src / "bin", arcname="bin")
        tar.add(src / "lib", arcname="lib")
    name = f"ollama-linux-{arch}.tar.zst"
    subprocess.run(["zstd", "-q", "-f", str(tar_path), "-o", str(rel / name)], check=True)
    digest = hashlib.sha256((rel / name).read_bytes()).hexdigest()
    if corrupt:
        digest = "0" * 64
    (rel / "sha256sum.txt").write_text(f"{'1' * 64}  ./ollama-darwin.tgz\n{digest}  ./{name}\n")
    return (tmp_path / "releases").as_uri()


def machine_arch() -> str:
    import platform

    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "amd64")


def test_ollama_install_from_the_release_archive(engines, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMCTL_OLLAMA_RELEASES", release(tmp_path, "0.32.15", machine_arch()))
    monkeypatch.setenv("PATH", f"{tmp_path / 'nothing'}:/usr/bin:/bin")
    capsys.readouterr()
    assert main(["engine", "install", "ollama", "--device", "cpu", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    path = Path(doc["path"])
    assert path == engines / "ollama-0.32.15-cpu"
    assert (path / "bin" / "ollama").is_file() and (path / "lib" / "ollama").is_dir()
    assert doc["installer"] == "archive" and len(doc["sha256"]) == 64
    assert not list(path.glob(".ollama-linux*"))  # the download is not kept
    assert main(["engine", "list", "--json"]) == 0
    (e,) = json.loads(capsys.readouterr().out)["engines"]
    assert e["installed_version"] == "0.32.15" and e["ref"] == "engine:ollama@0.32.15:cpu"
    # a profile with no runtime section runs it, and reads its version from it
    rendered, _ = render(ollama_profile(tmp_path, resources={"device": "cpu"}), capsys)
    assert rendered["steps"][0]["argv"][0] == str(path / "bin" / "ollama")
    assert rendered["engine_version"] == "0.32.15"
    assert rendered["version_source"].startswith("binary:")


def test_ollama_install_refuses_a_checksum_mismatch(engines, tmp_path, capsys, monkeypatch):
    url = release(tmp_path, "0.32.15", machine_arch(), corrupt=True)
    monkeypatch.setenv("LLMCTL_OLLAMA_RELEASES", url)
    capsys.readouterr()
    assert main(["engine", "install", "ollama", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "does not match the published" in err and "Traceback" not in err
    assert not (engines / "ollama-0.32.15-cpu").exists()
    # a version the host does not have: one line naming the URL
    assert main(["engine", "install", "ollama", "--version", "0.1.0", "--device", "cpu"]) == 1
    assert "could not download" in capsys.readouterr().err


def test_every_engine_is_named_by_install_help_and_list(engines, capsys):
    from llmdeploy_cli import registry

    capsys.readouterr()
    assert main(["engine", "install", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in registry.names():
        assert name in text, name
    assert main(["engine", "list"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    for name in registry.names():
        assert name in err, name


def test_llamacpp_recipe_installs_xllamacpp_per_device():
    from llmdeploy_cli.engines import catalog

    recipe = catalog.get("llamacpp")
    assert recipe.devices == ("cpu", "cuda") and recipe.executable == "python3"
    assert recipe.install_requirements(recipe.default_version, "cpu") == [
        f"xllamacpp=={recipe.default_version}"
    ]
    assert recipe.index_url["cuda"].endswith("/whl/cu128") and "cpu" not in recipe.index_url
    for device in ("cpu", "cuda"):
        assert catalog.constraints_name("llamacpp", recipe.default_version, device)


@pytest.mark.slow
def test_llamacpp_install_then_serve_with_no_runtime_section(tiny_model, tmp_path):
    """For real: `llmctl engine install llamacpp --device cpu` (the xllamacpp wheel from the
    package index), then a profile with options.runtime: xllamacpp and no runtime section
    serves the tiny GGUF with that env's python3."""
    if os.environ.get("LLMCTL_NO_ENGINE_INSTALL") == "1":
        pytest.skip("LLMCTL_NO_ENGINE_INSTALL=1: not installing llamacpp")
    pytest.importorskip("gguf", reason="writing a GGUF needs the gguf package (test extra)")
    from tests.gguf_model import write_gguf
    from tests.serve.conftest import json_out, llmctl, llmctl_env

    engines = tmp_path / "engines"
    env = llmctl_env(LLMCTL_STATE_DIR=tmp_path / "state", LLMCTL_ENGINES_DIR=engines)
    r = llmctl("engine", "install", "llamacpp", "--device", "cpu", "--json", env=env,
               timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    installed = Path(json_out(r)["path"])
    assert (installed / "bin" / "python3").exists()
    gguf = write_gguf(tiny_model, tmp_path / "tiny.gguf")
    p = write(
        tmp_path,
        {
            "name": "lc-installed",
            "backend": "llamacpp",
            "model": {"source": str(gguf), "served_name": "tiny"},
            "server": {"port": "auto"},
            "resources": {"device": "cpu", "max_model_len": 256, "max_num_seqs": 1},
            "options": {"runtime": "xllamacpp", "threads": 1, "webui": False},
            "smoke": {"max_tokens": 4},
        },
        "lc.yml",
    )
    r = llmctl("render", "--json", p, env=env)
    assert json_out(r)["steps"][0]["argv"][0] == str(installed / "bin" / "python3")
    try:
        r = llmctl("serve", p, "--detach", "--json", "--timeout", "120", env=env, timeout=180)
        assert r.returncode == 0, r.stderr[-3000:]
        assert json_out(r)["model"] == "tiny"
    finally:
        llmctl("stop", "lc-installed", env=env, timeout=60)
