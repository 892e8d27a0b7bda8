"""Where engine environments live, their manifests, and `engine:NAME[@VERSION]` references.

Layout: ENGINES_DIR/NAME-VERSION-DEVICE/ is a virtual environment with a manifest,
`llmctl-engine.json`, written atomically as the last step of a successful install: a folder
without one is an install that did not finish (or is running) and is never used.
ENGINES_DIR is $LLMCTL_ENGINES_DIR, else STATE_DIR/engines. Nothing here spawns a process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from llmdeploy_cli.distinfo import dist_version, site_packages, version_tuple
from llmdeploy_cli.paths import engines_dir

MANIFEST = "llmctl-engine.json"
INSTALLING = ".llmctl-installing"  # marker of an install in progress or interrupted
REF_PREFIX = "engine:"
_REF = re.compile(
    r"^(?P<name>[A-Za-z0-9_.-]+?)(?:@(?P<version>[^@:\s/]+))?(?::(?P<device>cpu|cuda))?$"
)


def env_dir(name: str, version: str, device: str, base: Path | None = None) -> Path:
    return (base or engines_dir()) / f"{name}-{version}-{device}"


@dataclass(frozen=True)
class InstalledEngine:
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest.get("engine", "")

    @property
    def version(self) -> str:
        return self.manifest.get("version", "")

    @property
    def device(self) -> str:
        return self.manifest.get("device", "")

    def dist_version(self) -> str | None:
        """The engine distribution's version read from its dist-info in the env (a release
        archive's install: the version installed, when its executable is still there)."""
        if self.manifest.get("archive"):
            exe = self.path / "bin" / (self.manifest.get("executable") or self.name)
            return self.version if exe.exists() else None
        dist = self.manifest.get("distribution") or self.name
        for site in site_packages(self.path):
            found = dist_version(site, dist)
            if found:
                return found[0]
        return None

    def as_dict(self) -> dict:
        d = dict(self.manifest)
        d["path"] = str(self.path)
        d["installed_version"] = self.dist_version()
        d["ref"] = f"{REF_PREFIX}{self.name}@{self.version}:{self.device}"
        return d


def read_manifest(path: Path) -> dict | None:
    try:
        doc = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("engine") else None


def write_manifest(path: Path, doc: dict) -> None:
    from llmdeploy_cli.fsutil import atomic_write

    atomic_write(path / MANIFEST, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def begin(target: Path) -> None:
    """The first step of an install: create the env's folder with the install marker (a
    folder with the marker is never used; `finish` drops it)."""
    target.mkdir(parents=True)
    (target / INSTALLING).write_text(f"{os.getpid()}\n")


def finish(target: Path, recipe, version: str, device: str, installer: str, **fields) -> dict:
    """The last step of an install: write the manifest (the keys every install records,
    then the installer's own `fields`) and drop the install marker, so the env is used from
    now on. Returns the manifest."""
    manifest = {
        "engine": recipe.name,
        "distribution": recipe.distribution,
        "executable": recipe.executable,
        "version": version,
        "device": device,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "installer": installer,
        **fields,
    }
    write_manifest(target, manifest)
    (target / INSTALLING).unlink()
    return manifest


def installed(name: str | None = None, base: Path | None = None) -> list[InstalledEngine]:
    """Complete installs (those with a manifest), newest version first within a name."""
    root = base or engines_dir()
    out = []
    if root.is_dir():
        for child in root.iterdir():
            if not child.is_dir() or (child / INSTALLING).exists():
                continue
            doc = read_manifest(child)
            if doc is None or (name is not None and doc.get("engine") != name):
                continue
            out.append(InstalledEngine(child, doc))
    out.sort(key=lambda e: (e.name, [-x for x in version_tuple(e.version)], e.device))
    return out


def unfinished(base: Path | None = None) -> list[Path]:
    """Folders left by installs that did not finish (or are still running)."""
    root = base or engines_dir()
    if not root.is_dir():
        return []
    return sorted(c for c in root.iterdir() if c.is_dir() and (c / INSTALLING).exists())


def parse_ref(text: str) -> tuple[str, str | None, str | None]:
    """'engine:xinference@4.1.0:cpu' -> ('xinference', '4.1.0', 'cpu'); version, device optional."""
    from llmdeploy_cli.errors import UsageError

    m = _REF.match(text.removeprefix(REF_PREFIX).strip())
    if not m:
        raise UsageError(
            f"not an engine reference: {text!r}",
            hint="write engine:NAME, engine:NAME@VERSION or engine:NAME@VERSION:DEVICE",
        )
    return m["name"], m["version"], m["device"]


def resolve_ref(text: str, device: str | None = None, base: Path | None = None) -> Path:
    """The env an `engine:` reference names. Pure lookup; never installs.

    Among complete installs of NAME whose version is VERSION (or starts with VERSION.),
    the device written in the reference, else the profile's device (cpu/cuda), else any;
    newest version first, and cuda before cpu when the device is not known. When nothing
    matches, the folder an install would create (so `render` shows where it would be and
    preflight reports the executable missing).
    """
    from llmdeploy_cli.engines.catalog import recipe_for

    name, version, ref_device = parse_ref(text)
    want = ref_device or (device if device in ("cpu", "cuda") else None)
    cands = [
        e
        for e in installed(name, base)
        if version is None or e.version == version or e.version.startswith(version + ".")
    ]
    if want:
        cands = [e for e in cands if e.device == want]
    else:
        cands.sort(key=lambda e: e.device != "cuda")  # stable: keeps newest-first order
    if cands:
        return cands[0].path
    recipe = recipe_for(name)
    fallback_version = version or (recipe.default_version if recipe else "unknown")
    return env_dir(name, fallback_version, want or "cpu", base)


def machine_device() -> str:
    """cuda when this machine shows an NVIDIA GPU (nvidia-smi on PATH), else cpu."""
    return "cuda" if shutil.which("nvidia-smi") else "cpu"


def for_profile(
    name: str, executable: str, device: str | None = None, base: Path | None = None
) -> InstalledEngine | None:
    """The install a profile with no `runtime` section uses: the newest complete install of
    engine `name` that holds `executable` in its bin/, for the profile's device (cpu or
    cuda); with `auto` or unset, the machine's device first, then the other. None: nothing
    fits (the executable is then looked up on PATH)."""
    if not executable or os.sep in executable:
        return None
    cands = [e for e in installed(name, base) if os.access(e.path / "bin" / executable, os.X_OK)]
    if device in ("cpu", "cuda"):
        cands = [e for e in cands if e.device == device]
    else:
        first = machine_device()
        cands.sort(key=lambda e: e.device != first)  # stable: newest first within a device
    return cands[0] if cands else None


def lock_path(path: Path) -> Path:
    """The lock an install holds while it builds `path` (beside it, not inside)."""
    return path.parent / f".{path.name}.lock"


def remove(path: Path, *, locked: bool = False) -> None:
    """Delete one engine env, only if it is one (manifest or install marker present) and no
    install of it is running (`locked`: the caller holds its lock already)."""
    import fcntl

    from llmdeploy_cli.errors import LlmctlError

    if not ((path / MANIFEST).exists() or (path / INSTALLING).exists()):
        raise LlmctlError(f"{path} is not an llmctl engine environment; not removing it")
    if locked:
        shutil.rmtree(path)
        return
    with open(lock_path(path), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LlmctlError(
                f"an install of {path.name} is running; not removing it",
                hint="wait for it to finish (or stop it), then remove",
            ) from None
        shutil.rmtree(path)
