"""engine install / list / remove without the network: a fake installer seam (Tools).

The fake creates what uv/venv/pip would (bin/python, site-packages, dist-info folders,
the engine's executable) and records every argv, so these tests check the commands llmctl
runs (uv and pip paths, constraints, CPU torch first, pip config passed to uv), the
CPU fix-ups and guards, failure reporting, the manifest, `engine:` refs and the CLI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmdeploy_cli.cli.app import main
from llmdeploy_cli.engines import install as inst
from llmdeploy_cli.engines import store
from llmdeploy_cli.errors import LlmctlError, UsageError

PIP_CONFLICT = [
    "Collecting xinference==4.1.0",
    "  Downloading xinference-4.1.0-py3-none-any.whl (56 MB)",
    "WARNING: Location 'file:///opt/x/simple/foo/' is ignored: it is neither a file nor a "
    "directory.",
    "ERROR: Cannot install xinference==4.1.0 because these package versions have "
    "conflicting dependencies.",
    "",
    "The conflict is caused by:",
    "    xinference 4.1.0 depends on click<8.2.0",
    "    The user requested (constraint) click==8.3.0",
    "[notice] A new release of pip is available",
]


class FakeTools(inst.Tools):
    def __init__(self, *, uv=False, fail_on=None, cuda_torch=False, tv_breaks=True):
        self.calls: list[list[str]] = []
        self.envs: list[dict] = []
        self.uv = uv
        self.fail_on = fail_on
        self.cuda_torch = cuda_torch
        self.tv_breaks = tv_breaks
        super().__init__(which=self._which, run=self._run, python="/usr/bin/python3.11")

    def _which(self, name):
        return "/fake/bin/uv" if (name == "uv" and self.uv) else None

    @staticmethod
    def _site(target: Path) -> Path:
        return target / "lib" / "python3.11" / "site-packages"

    def _target(self, argv) -> Path:
        if "--python" in argv and argv[1] != "venv":
            return Path(argv[argv.index("--python") + 1]).parent.parent
        if argv[1:3] == ["-m", "pip"] or argv[1:3] == ["-c", "import torchvision"]:
            return Path(argv[0]).parent.parent
        return Path(argv[-1])

    def _run(self, argv, env, on_line):
        self.calls.append(list(argv))
        self.envs.append(env)
        target = self._target(argv)
        site = self._site(target)
        if "venv" in argv:
            (target / "bin").mkdir(parents=True, exist_ok=True)
            site.mkdir(parents=True, exist_ok=True)
            (target / "bin" / "python").write_text("")
            (target / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.7\n")
            return 0
        if argv[1:3] == ["-c", "import torchvision"]:
            if self.tv_breaks:
                on_line("Traceback (most recent call last):")
                on_line("RuntimeError: operator torchvision::nms does not exist")
                return 1
            return 0
        if "uninstall" in argv:
            for d in site.glob("torchvision-*.dist-info"):
                d.rmdir()
            on_line("Successfully uninstalled torchvision-0.28.0")
            return 0
        if "install" in argv:
            wants = [a for a in argv if "==" in a or a.isidentifier()]
            if self.fail_on and any(a.startswith(self.fail_on) for a in wants):
                for ln in PIP_CONFLICT:
                    on_line(ln)
                return 1
            for a in wants:
                on_line(f"Collecting {a}")
                if a.startswith("torch=="):
                    v = a.split("==")[1]
                    if self.cuda_torch:
                        (site / f"torch-{v}.dist-info").mkdir()
                        (site / "nvidia_cublas-13.0.dist-info").mkdir()
                    else:
                        (site / f"torch-{v}+cpu.dist-info").mkdir()
                if a.startswith("xinference=="):
                    (site / f"xinference-{a.split('==')[1]}.dist-info").mkdir()
                    (site / "torchvision-0.28.0.dist-info").mkdir()
                    exe = target / "bin" / "xinference-local"
                    exe.write_text("#!/bin/sh\n")
                    exe.chmod(0o755)
            return 0
        raise AssertionError(f"unexpected command {argv}")


@pytest.fixture
def engines(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "engines"
    monkeypatch.setenv("LLMCTL_ENGINES_DIR", str(d))
    for k in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS"):
        monkeypatch.delenv(k, raising=False)
    return d


def test_pip_path_installs_cpu_torch_first_with_constraints(engines):
    tools = FakeTools()
    events = []
    res = inst.install("xinference", device="cpu", tools=tools, on_event=events.append)
    target = engines / "xinference-4.1.0-cpu"
    assert res.path == target and not res.already
    py = str(target / "bin" / "python")
    cons = str(target / "llmctl-constraints.txt")
    assert tools.calls[0] == ["/usr/bin/python3.11", "-m", "venv", str(target)]
    assert tools.calls[1] == [py, "-m", "pip", "install", "--progress-bar", "off", "-c", cons,
                              "torch==2.13.0"]  # fmt: skip
    assert tools.calls[2][:8] == tools.calls[1][:8]
    assert tools.calls[2][8:10] == ["xinference==4.1.0", "transformers"]
    # the committed constraints pin the CPU torch, and are copied into the env
    assert "torch==2.13.0+cpu" in Path(cons).read_text().splitlines()
    # CPU fix-up: the CUDA torchvision that does not load is removed
    assert tools.calls[3] == [py, "-c", "import torchvision"]
    assert tools.calls[4] == [py, "-m", "pip", "uninstall", "-y", "torchvision"]
    m = json.loads((target / store.MANIFEST).read_text())
    assert m["engine"] == "xinference" and m["version"] == "4.1.0" and m["device"] == "cpu"
    assert m["python"] == "3.11.7" and m["installer"] == "pip"
    assert m["constraints"] == "xinference-4.1.0-cpu.txt"
    assert m["removed"][0]["package"] == "torchvision"
    assert "nms does not exist" in m["removed"][0]["reason"]
    assert not (target / store.INSTALLING).exists()
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and "step" in kinds and "output" in kinds
    assert any("CPU torch 2.13.0 first" in e.message for e in events)
    # the installer never sees the caller's venv
    assert "VIRTUAL_ENV" not in tools.envs[1]
    # a second install is a no-op
    tools2 = FakeTools()
    again = inst.install("xinference", device="cpu", tools=tools2)
    assert again.already and tools2.calls == []


def test_uv_path_passes_pip_config_and_constraints(engines, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/extra/simple")
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.invalid/simple")
    tools = FakeTools(uv=True)
    res = inst.install("xinference", "4.1.0", "cpu", tools=tools)
    target = res.path
    py = str(target / "bin" / "python")
    assert tools.calls[0] == [
        "/fake/bin/uv", "venv", "--allow-existing", "--python", "/usr/bin/python3.11",
        str(target),
    ]  # fmt: skip
    torch_call = tools.calls[1]
    assert torch_call[:5] == ["/fake/bin/uv", "pip", "install", "--python", py]
    assert torch_call[-1] == "torch==2.13.0"
    joined = " ".join(torch_call)
    assert "--index-url https://mirror.invalid/simple" in joined
    assert "--extra-index-url file:///opt/extra/simple" in joined
    assert "--find-links /opt/wheels" in joined
    assert "--index-strategy unsafe-best-match" in joined
    assert f"-c {target / 'llmctl-constraints.txt'}" in joined
    assert tools.calls[4] == ["/fake/bin/uv", "pip", "uninstall", "--python", py, "torchvision"]
    assert res.manifest["installer"].startswith("uv")


def test_uv_configured_on_its_own_gets_no_pip_flags(monkeypatch):
    monkeypatch.setenv("UV_INDEX_URL", "https://mirror.invalid/simple")
    assert inst.pip_index_args() == []


def test_cuda_torch_on_cpu_fails_and_leaves_nothing(engines):
    with pytest.raises(LlmctlError) as e:
        inst.install("xinference", device="cpu", tools=FakeTools(cuda_torch=True))
    assert "CUDA torch" in e.value.message and "nvidia-cublas" in e.value.message
    assert not (engines / "xinference-4.1.0-cpu").exists()


def test_cpu_torch_on_cuda_fails_and_leaves_nothing(engines):
    """A find-links folder with torch-X+cpu satisfies `torch==X` (PEP 440 ignores local
    labels): a CUDA install that got it fails, naming the build and the cause."""
    with pytest.raises(LlmctlError) as e:
        inst.install("lmdeploy", device="cuda", tools=FakeTools(cuda_torch=False))
    assert "CPU torch was installed for --device cuda" in e.value.message
    assert "+cpu" in e.value.message and "find-links" in e.value.hint
    assert not (engines / "lmdeploy-0.18.0-cuda").exists()


def test_resolver_failure_reports_its_own_reason(engines):
    with pytest.raises(inst.InstallError) as e:
        inst.install("xinference", device="cpu", tools=FakeTools(fail_on="xinference=="))
    err = e.value
    assert "installing xinference 4.1.0 failed (exit 1): ERROR: Cannot install" in err.message
    assert "The conflict is caused by:" in err.hint
    assert "click==8.3.0" in err.hint
    assert "is ignored" not in err.hint and "[notice]" not in err.hint
    assert not (engines / "xinference-4.1.0-cpu").exists()
    assert store.installed() == []


def test_meaningful_tail_finds_uv_errors():
    lines = [
        "Using Python 3.11.7 environment at: /x",
        "  × No solution found when resolving dependencies:",
        "  ╰─▶ Because lmdeploy==0.18.0 depends on torch<=2.12.1 and you require torch==2.13.0,",
        "      we can conclude that your requirements are unsatisfiable.",
    ]
    tail = inst.meaningful_tail(lines)
    assert tail[0].strip().startswith("× No solution") and "torch<=2.12.1" in tail[1]
    assert inst.meaningful_tail(["a", "", "b"]) == ["a", "b"]


def test_refusals_are_usage_errors(engines):
    with pytest.raises(UsageError, match="--device cpu"):
        inst.install("vllm", device="cpu", tools=FakeTools())
    with pytest.raises(UsageError, match="no committed constraints file") as e:
        inst.install("xinference", "4.0.0", "cpu", tools=FakeTools())
    assert "committed for: xinference-4.1.0-cpu" in e.value.hint
    assert "--unpinned" in e.value.hint
    with pytest.raises(UsageError, match="no install recipe"):
        inst.install("nosuch", tools=FakeTools())


def test_interrupted_install_is_not_listed_and_is_redone(engines):
    partial = engines / "xinference-4.1.0-cpu"
    partial.mkdir(parents=True)
    (partial / store.INSTALLING).write_text("1\n")
    assert store.installed() == [] and store.unfinished() == [partial]
    res = inst.install("xinference", device="cpu", tools=FakeTools())
    assert not res.already and store.installed()[0].path == partial


def test_foreign_folder_is_never_deleted(engines):
    foreign = engines / "xinference-4.1.0-cpu"
    foreign.mkdir(parents=True)
    (foreign / "precious.txt").write_text("x")
    with pytest.raises(LlmctlError, match="not an llmctl engine environment"):
        inst.install("xinference", device="cpu", tools=FakeTools())
    assert (foreign / "precious.txt").exists()
    with pytest.raises(LlmctlError):
        store.remove(foreign)


def _fake_env(engines: Path, version: str, device: str) -> Path:
    p = engines / f"xinference-{version}-{device}"
    site = p / "lib" / "python3.11" / "site-packages"
    (site / f"xinference-{version}.dist-info").mkdir(parents=True)
    (p / "bin").mkdir()
    for exe in ("xinference-local", "xinference"):
        (p / "bin" / exe).write_text("#!/bin/sh\n")
        (p / "bin" / exe).chmod(0o755)
    store.write_manifest(
        p, {"engine": "xinference", "distribution": "xinference", "version": version,
            "device": device, "python": "3.11.7", "installer": "pip"},
    )  # fmt: skip
    return p


def test_resolve_ref_picks_version_and_device(engines):
    new_cpu = _fake_env(engines, "4.1.0", "cpu")
    new_cuda = _fake_env(engines, "4.1.0", "cuda")
    old_cpu = _fake_env(engines, "4.0.2", "cpu")
    assert store.resolve_ref("engine:xinference", device="cpu") == new_cpu
    assert store.resolve_ref("engine:xinference", device="auto") == new_cuda
    assert store.resolve_ref("engine:xinference", device=None) == new_cuda
    assert store.resolve_ref("engine:xinference@4.0", device="cpu") == old_cpu
    assert store.resolve_ref("engine:xinference@4.0.2:cpu", device="cuda") == old_cpu
    assert store.resolve_ref("engine:xinference@4.1.0:cuda") == new_cuda
    # nothing installed: the folder an install would create
    assert store.resolve_ref("engine:xinference@9.9", "cpu") == engines / "xinference-9.9-cpu"
    assert store.resolve_ref("engine:vllm") == engines / "vllm-0.33.0-cpu"
    assert [e.version for e in store.installed("xinference")] == ["4.1.0", "4.1.0", "4.0.2"]


XINF_PROFILE = """
name: xi
backend: xinference
runtime:
  venv: {venv}
model:
  source: {model}
options:
  model_name: llama-2-chat
  model_size_in_billions: 7
resources:
  device: cpu
"""


def test_render_finds_executable_and_version_in_an_engine_env(
    engines, write_profile, tmp_path, capsys
):
    env = _fake_env(engines, "4.0.2", "cpu")
    model = tmp_path / "m"
    model.mkdir()
    prof = write_profile(XINF_PROFILE.format(venv="engine:xinference@4.0", model=model))
    assert main(["render", "--json", str(prof)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"][0]["argv"][0] == str(env / "bin" / "xinference-local")
    assert doc["engine_version"] == "4.0.2"
    assert doc["version_source"].startswith("dist-info:")
    # a plain path to the same env keeps working as before
    prof2 = write_profile(XINF_PROFILE.format(venv=env, model=model), "p2.yml")
    assert main(["render", "--json", str(prof2)]) == 0
    assert json.loads(capsys.readouterr().out)["engine_version"] == "4.0.2"


def test_cli_list_and_remove(engines, capsys):
    assert main(["engine", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engines"] == []
    a = _fake_env(engines, "4.1.0", "cpu")
    b = _fake_env(engines, "4.0.2", "cpu")
    assert main(["engine", "list"]) == 0
    text = capsys.readouterr().out
    assert "xinference  4.1.0" in text and str(a) in text
    assert main(["engine", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["dir"] == str(engines)
    first = doc["engines"][0]
    assert first["version"] == "4.1.0" and first["installed_version"] == "4.1.0"
    assert first["ref"] == "engine:xinference@4.1.0:cpu" and first["path"] == str(a)
    assert main(["engine", "remove", "xinference", "--version", "4.0.2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [str(b)]
    assert not b.exists() and a.exists()
    assert main(["engine", "remove", "xinference", "--version", "4.0.2"]) == 2
    assert "no installed engine matches" in capsys.readouterr().err
    assert main(["engine", "remove", "xinference"]) == 0
    assert not a.exists()


def test_cli_install_errors_use_the_envelope(engines, capsys):
    assert main(["engine", "install", "vllm", "--device", "cpu", "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["kind"] == "usage" and "cuda" in doc["error"]["hint"]


def test_cli_install_shows_progress_on_stderr(engines, capsys, monkeypatch):
    import llmdeploy_cli.engines.install as mod

    real = mod.install
    monkeypatch.setattr(mod, "install", lambda *a, **k: real(*a, tools=FakeTools(), **k))
    assert main(["engine", "install", "xinference", "--device", "cpu", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["engine"] == "xinference" and doc["path"].endswith("xinference-4.1.0-cpu")
    assert "installing CPU torch 2.13.0 first" in err and "Collecting xinference" in err
    assert "removing torchvision" in err and "installed xinference 4.1.0 (cpu)" in err
    assert os.path.isdir(doc["path"])


def test_missing_cpu_torch_says_where_it_comes_from(engines):
    class NoCpuTorch(FakeTools):
        def _run(self, argv, env, on_line):
            if "install" in argv and "torch==2.13.0" in argv:
                self.calls.append(list(argv))
                on_line("Using Python 3.11.7 environment at: x")
                on_line("error: No solution found when resolving dependencies")
                on_line(
                    "  cause: Because there is no version of torch==2.13.0+cpu and you "
                    "require torch==2.13.0+cpu, we can conclude that your requirements "
                    "are unsatisfiable."
                )
                return 1
            return super()._run(argv, env, on_line)

    with pytest.raises(inst.InstallError) as e:
        inst.install("xinference", device="cpu", tools=NoCpuTorch(uv=True))
    err = e.value
    assert err.message == (
        "installing torch 2.13.0 failed (exit 1): "
        "error: No solution found when resolving dependencies"
    )
    assert (
        err.hint.splitlines()[0].strip().startswith("cause: Because there is no version of torch")
    )
    assert "find-links" in err.hint
    assert not (engines / "xinference-4.1.0-cpu").exists()


def test_unpinned_keeps_the_cpu_torch_pinned(engines):
    tools = FakeTools()
    res = inst.install("xinference", "4.0.2", "cpu", tools=tools, unpinned=True)
    cons = res.path / "llmctl-constraints.txt"
    assert "torch==2.13.0+cpu" in cons.read_text().splitlines()
    assert ["-c", str(cons)] == tools.calls[1][6:8]
    assert res.manifest["constraints"] is None and res.manifest["version"] == "4.0.2"


def test_remove_refuses_while_an_install_holds_the_lock(engines):
    import fcntl

    env = _fake_env(engines, "4.1.0", "cpu")
    with open(store.lock_path(env), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        import subprocess
        import sys

        # another process (flock locks are per open file, so use a child)
        code = (
            "from llmdeploy_cli.engines import store; import pathlib, sys; "
            f"store.remove(pathlib.Path({str(env)!r}))"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode != 0 and "an install of xinference-4.1.0-cpu is running" in r.stderr
    assert env.exists()
    store.remove(env)
    assert not env.exists()


def test_recipes_come_from_the_backends(engines, monkeypatch):
    """`engine install` knows what each backend declares as its install capability."""
    from llmdeploy_cli import registry
    from llmdeploy_cli.capabilities import NOT_SUPPORTED
    from llmdeploy_cli.engines import catalog

    # every built-in declares a recipe; one that declares NOT_SUPPORTED is refused
    assert set(catalog.installable()) == set(registry.names()) - {"echo"}
    for name in ("ollama", "llamacpp"):
        monkeypatch.setattr(type(registry.get(name)), "install", NOT_SUPPORTED)
        with pytest.raises(UsageError, match=f"no install recipe for engine '{name}'") as e:
            inst.install(name, tools=FakeTools())
        assert "xinference" in e.value.hint and name not in e.value.hint
    recipe = catalog.get("xinference")
    backend = registry.get("xinference")
    assert (recipe.name, recipe.distribution, recipe.executable) == (
        "xinference",
        backend.distribution,
        backend.executable,
    )
    assert recipe.default_version == backend.install.default_version
    assert set(catalog.RECIPES) == set(catalog.installable())
