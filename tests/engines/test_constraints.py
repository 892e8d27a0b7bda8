"""The committed constraints files `llmctl engine install` pins engines with.

Offline: every file parses, pins the engine at its own version and the torch its recipe
installs first, and pins each package once per environment. Online (the package index
reachable, as in CI): installing the recipe against a CUDA file into an empty venv with
`uv pip install --dry-run` resolves to exactly the file's pins, so the resolver has nothing
to choose. The CPU files are proven by real installs (test_xinference_e2e.py, the Infinity
tests).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from llmdeploy_cli.engines import catalog
from llmdeploy_cli.engines.install import pip_index_args

FOLDER = resources.files("llmdeploy_cli") / "data" / "constraints"
FILES = sorted(p.name for p in FOLDER.iterdir() if p.name.endswith(".txt"))
STEM = re.compile(r"(?P<name>[a-z]+)-(?P<version>\d[^-]*)-(?P<device>cpu|cuda)\.txt")
PIN = re.compile(r"(?P<dist>[A-Za-z0-9._-]+)==(?P<version>[^ ;]+)\s*(?:;\s*(?P<marker>.+))?")


def norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def pins(filename: str) -> list[tuple[str, str, str | None]]:
    out = []
    for line in catalog.constraints_text(filename).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.fullmatch(line)
        assert m, f"{filename}: not a pin: {line!r}"
        out.append((norm(m["dist"]), m["version"], m["marker"]))
    return out


def test_there_are_cuda_files_for_the_gpu_engines():
    for name in ("vllm", "lmdeploy", "sglang"):
        recipe = catalog.get(name)
        assert catalog.constraints_name(name, recipe.default_version, "cuda") is not None, name


@pytest.mark.parametrize("filename", FILES)
def test_file_pins_its_engine_and_torch(filename):
    m = STEM.fullmatch(filename)
    assert m, f"{filename}: name it NAME-VERSION-DEVICE.txt"
    recipe = catalog.get(m["name"])
    assert m["device"] in recipe.devices
    got = pins(filename)
    by_dist: dict[str, set[str]] = {}
    for dist, version, marker in got:
        by_dist.setdefault(dist, set()).add(version)
        if marker is None:
            # an unconditional pin is the only pin of its package
            assert [d for d, _, _ in got].count(dist) == 1, f"{dist} pinned twice"
    assert by_dist[norm(recipe.distribution)] == {m["version"]}
    torch = recipe.torch.get(m["device"])
    if torch:
        want = f"{torch}+cpu" if m["device"] == "cpu" else torch
        assert by_dist["torch"] == {want}
    elif m["device"] in recipe.torch:
        assert "torch" in by_dist  # the engine's own torch pin, resolved
    else:  # no torch at all (xllamacpp): nothing but the engine's own packages
        assert "torch" not in by_dist


@functools.cache
def _index_reachable(uv: str, index: tuple[str, ...] = (), probe: str = "six==1.16.0") -> bool:
    """The index answers for `probe` (`index`: these index flags; default: pip's own)."""
    args = list(index) or pip_index_args()
    r = subprocess.run(
        [uv, "pip", "compile", "-", "--quiet", "--no-header", *args],
        input=probe + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.returncode == 0


UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
CUDA_FILES = [f for f in FILES if f.endswith("-cuda.txt")]


@pytest.mark.engine
@pytest.mark.skipif(UV is None, reason="uv is not installed (the test extra installs it)")
@pytest.mark.parametrize("filename", CUDA_FILES)
def test_cuda_file_leaves_the_resolver_nothing_to_choose(filename, tmp_path):
    if not _index_reachable(UV):
        pytest.skip("the package index is not reachable from here (needed for a dry run)")
    m = STEM.fullmatch(filename)
    recipe = catalog.get(m["name"])
    reqs = recipe.install_requirements(m["version"], "cuda")
    # The index only: a find-links folder of local builds (this machine's CPU torch)
    # satisfies `torch==X` too, which the CUDA install refuses afterwards (install.py).
    index = pip_index_args()
    for i in reversed([i for i, a in enumerate(index) if a == "--find-links"]):
        del index[i : i + 2]
    if recipe.index_url.get("cuda"):  # the recipe's own index, as the install uses it
        index = ["--index-url", recipe.index_url["cuda"]]
        if not _index_reachable(UV, tuple(index), recipe.distribution):
            pytest.skip(f"{recipe.index_url['cuda']} is not reachable from here")
    venv = tmp_path / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    cfile = tmp_path / filename
    cfile.write_text(catalog.constraints_text(filename))
    r = subprocess.run(
        [UV, "pip", "install", "--dry-run", "--python", str(venv / "bin" / "python"),
         *index, "-c", str(cfile), *reqs],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    would = dict(
        (norm(n), v) for n, v in re.findall(r"^ \+ ([A-Za-z0-9._-]+)==(\S+)$", r.stderr, re.M)
    )
    assert len(would) > (50 if "cuda" in recipe.torch else 0), r.stderr[-3000:]
    pinned: dict[str, set[str]] = {}
    for dist, version, _ in pins(filename):
        pinned.setdefault(dist, set()).add(version)
    unpinned = sorted(d for d in would if d not in pinned)
    assert not unpinned, f"resolved but not pinned: {unpinned}"
    off = {d: v for d, v in would.items() if v not in pinned[d]}
    assert not off, f"resolved to other versions than the pins: {off}"
