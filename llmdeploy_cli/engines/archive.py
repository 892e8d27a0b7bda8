"""`llmctl engine install` for an engine shipped as a release archive (Ollama): download
the archive and the release's published sha256 list, check the archive against it, unpack
it into the engine's folder (the archive's own bin/ and lib/), check the executable.

The release host is the recipe's `Archive.base`, or the variable it names (a mirror, or a
file:// folder laid out like the release: what the tests use, since the host is out of
reach there). Nothing is run from the archive before its checksum matches.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from llmdeploy_cli.capabilities import Archive, Recipe
from llmdeploy_cli.engines.events import Event, InstallError

CHUNK = 1 << 20


def urls(archive: Archive, version: str, environ=None) -> tuple[str, str, str]:
    """(archive URL, sha256 list URL, the archive's file name) for this machine."""
    env = os.environ if environ is None else environ
    machine = platform.machine().lower()
    arch = archive.arches.get(machine)
    if arch is None:
        raise InstallError(
            f"no release archive for this machine ({machine})",
            hint=f"the release has: {', '.join(sorted(set(archive.arches.values())))}",
        )
    base = (env.get(archive.base_env) or archive.base).rstrip("/")
    path = archive.path.format(version=version, arch=arch)
    sums = archive.sha256_path.format(version=version, arch=arch)
    return f"{base}/{path}", f"{base}/{sums}", path.rsplit("/", 1)[-1]


def _download(url: str, dest: Path, emit: Callable[[Event], None]) -> str:
    """Fetch url into dest; return its sha256."""
    import urllib.error
    import urllib.request

    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0)
            done, last = 0, time.monotonic()
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if time.monotonic() - last > 5:
                    last = time.monotonic()
                    pct = f" ({100 * done // total} %)" if total else ""
                    emit(Event("output", f"Downloading {done >> 20} MiB{pct}"))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise InstallError(
            f"could not download {url}: {reason}",
            hint="check the network, or point the release host variable at a mirror",
        ) from None
    return digest.hexdigest()


def published_sha256(text: str, filename: str) -> str | None:
    """The hash a `sha256sum` list gives for filename ("HASH  ./FILE" or "HASH *FILE")."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*").removeprefix("./") == filename:
            return parts[0].lower()
    return None


def _open_tar(path: Path) -> tuple[tarfile.TarFile, subprocess.Popen | None]:
    name = path.name
    if name.endswith((".tar.zst", ".tzst")):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise InstallError(
                f"{name} is zstd-compressed and the zstd command is not on PATH",
                hint="install zstd (apt-get install zstd), then run the install again",
            )
        proc = subprocess.Popen([zstd, "-dc", str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        return tarfile.open(fileobj=proc.stdout, mode="r|"), proc
    return tarfile.open(path, mode="r:*"), None


def unpack(path: Path, target: Path) -> None:
    """Extract a .tgz/.tar.gz/.tar.zst into target, refusing links and paths that leave it."""
    tar, proc = _open_tar(path)
    try:
        with tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise InstallError(f"could not unpack {path.name}: {e}") from None
    finally:
        if proc is not None:
            proc.wait()
    if proc is not None and proc.returncode != 0:
        raise InstallError(f"could not unpack {path.name}: zstd exited {proc.returncode}")


def build(recipe: Recipe, version: str, device: str, target: Path, emit) -> dict:
    from llmdeploy_cli.engines import store

    assert recipe.archive is not None
    url, sums_url, filename = urls(recipe.archive, version)
    store.begin(target)
    download = target / f".{filename}"
    emit(Event("step", f"downloading {url}"))
    got = _download(url, download, emit)
    emit(Event("step", f"checking it against {sums_url}"))
    sums = target / ".sha256sum.txt"
    _download(sums_url, sums, emit)
    want = published_sha256(sums.read_text(errors="replace"), filename)
    if want is None:
        raise InstallError(
            f"{sums_url} lists no sha256 for {filename}",
            hint="the release does not publish this archive; check the version",
        )
    if got != want:
        raise InstallError(
            f"{filename}: sha256 {got} does not match the published {want}",
            hint="the download is corrupt or not the release's; nothing was installed",
        )
    emit(Event("step", f"unpacking {filename} into {target}"))
    unpack(download, target)
    download.unlink()
    sums.unlink()
    exe = target / "bin" / recipe.executable
    if not os.access(exe, os.X_OK):
        raise InstallError(
            f"the archive unpacked but {exe} is missing",
            hint=f"{filename} is not laid out as the release (bin/{recipe.executable})",
        )
    return store.finish(
        target,
        recipe,
        version,
        device,
        "archive",
        distribution=recipe.distribution or None,
        python=None,
        archive=url,
        sha256=got,
        constraints=None,
        requirements=[],
        removed=[],
    )
