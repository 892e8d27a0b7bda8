"""Getting a model onto an air-gapped machine: pull (online), pack, unpack (offline).

pack writes one uncompressed tar: `model/...` (the model folder, symlinks of a hub cache
resolved to their content, or the single GGUF file), `profile.yml` (the profile as written)
and `llmctl-manifest.json` (size and sha256 of every file, written last, hashed while the
files stream into the archive: no file is read into memory whole).

unpack checks every member before it writes anything (no absolute paths, no `..`, no links,
no device files, nothing the manifest does not name), streams each file to a temporary name
while hashing it, renames it only when size and sha256 match, then writes `profile.yml`
pointing at the unpacked model with `offline: true`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import LlmctlError, PreflightError, UnreachableError, UsageError
from llmdeploy_cli.models import facts
from llmdeploy_cli.models.verify import MANIFEST

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.profile import Profile

PROFILE = "profile.yml"
FORMAT = "llmctl-pack"
CHUNK = 4 * 1024 * 1024

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- pull ----------------------------------------------------------------------------------


CONFIG_FILES = ["config.json", "*.index.json", "generation_config.json"]


def pull_model(
    profile: Profile, *, progress: Progress = _quiet, environ=None, config_only: bool = False
) -> Path:
    """Download the profile's hub model into the hub cache (resumable) and return its folder.

    `offline: true` describes the machine that serves the model; pull is the explicit,
    online step of the air-gapped workflow, so it downloads anyway (saying so).
    `config_only` fetches config.json and the weight index: enough for `llmctl plan`."""
    environ = os.environ if environ is None else environ
    source = profile.model.source
    if profile.model_path() is not None:
        raise UsageError(
            f"model.source is a local path ({source}): nothing to download",
            hint="pull needs a hub id (org/name)",
        )
    backend = facts.backend_of(profile)
    if backend is not None and facts.downloads_itself(backend):
        hub = facts.hub_vars(backend)
        store = f"its model store ({hub.cache_env})" if hub and hub.cache_env else "its store"
        raise UsageError(
            f"{facts.display_name(backend)} downloads its own models ({backend.name} pull, or "
            "llmctl serve)",
            hint=f"copy {store} to move them to another machine",
        )
    if profile.offline:
        progress("offline: true applies to the engine; pull downloads now, as asked")
    token = environ.get(profile.hub.token_env) if profile.hub.token_env else None
    patterns = CONFIG_FILES if config_only else None
    if profile.hub.source == "modelscope":
        return _pull_modelscope(profile, token, progress, patterns)
    return _pull_hf(profile, token, progress, environ, patterns)


def _pull_hf(profile: Profile, token, progress: Progress, environ, patterns) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise LlmctlError(
            "huggingface_hub is not installed",
            hint="pip install huggingface_hub (in the environment that runs llmctl)",
        ) from None
    if str(environ.get("HF_HUB_OFFLINE", "")).upper() in ("1", "ON", "YES", "TRUE"):
        raise PreflightError(
            "HF_HUB_OFFLINE is set in this shell: huggingface_hub will not download",
            hint="unset HF_HUB_OFFLINE for the pull",
        )
    endpoint = profile.hub.endpoint or environ.get("HF_ENDPOINT") or None
    cache_dir = engine_hf_cache(profile, environ)
    where = f" from {endpoint}" if endpoint else ""
    progress(f"downloading {profile.model.source}{where} (resumes an interrupted download)")
    try:
        path = snapshot_download(
            profile.model.source,
            revision=profile.model.revision,
            cache_dir=cache_dir,
            token=token,
            endpoint=endpoint,
            allow_patterns=patterns,
        )
    except Exception as e:  # noqa: BLE001 - every hub/network failure becomes one clear error
        raise _download_error(e, profile.model.source) from None
    return Path(path)


def engine_hf_cache(profile: Profile, environ) -> str:
    """The Hugging Face hub cache the engine will read the model from, so pull puts it
    there: hub.cache_dir as build() hands it (HF_HOME; relative: the profile's folder), then
    the profile's `env:` (HF_HUB_CACHE, HF_HOME, ...), over this shell's variables."""
    from llmdeploy_cli.capabilities import HF_CACHE

    env = dict(environ)
    if profile.hub.cache_dir:
        from llmdeploy_cli.backend import profile_relative

        env["HF_HOME"] = profile_relative(profile, profile.hub.cache_dir)
    env.update({k: str(v) for k, v in profile.env.items()})
    return HF_CACHE.folder(env)[0]


def _download_error(e: Exception, source: str) -> LlmctlError:
    kinds = {c.__name__ for c in type(e).__mro__}
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if kinds & {"RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"}:
        return LlmctlError(
            f"{source}: {text}",
            hint="check the id and revision; a gated model needs hub.token_env with a token "
            "that has access",
        )
    if kinds & {
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "ConnectionError",
        "ConnectError",
        "Timeout",
        "TimeoutException",
        "ProxyError",
        "OSError",
    }:
        return UnreachableError(
            f"cannot reach the model hub for {source}: {text}",
            hint="check the network, or set hub.endpoint (HF_ENDPOINT) to a reachable mirror",
        )
    return LlmctlError(f"download of {source} failed: {type(e).__name__}: {text}")


def _pull_modelscope(profile: Profile, token, progress: Progress, patterns) -> Path:
    try:
        from modelscope import snapshot_download  # type: ignore[import-not-found]
    except ImportError:
        raise LlmctlError(
            "hub.source is modelscope, but the modelscope package is not installed",
            hint="pip install modelscope (in the environment that runs llmctl)",
        ) from None
    progress(f"downloading {profile.model.source} from ModelScope")
    kwargs = {}
    if profile.hub.cache_dir:
        from llmdeploy_cli.backend import profile_relative

        kwargs["cache_dir"] = profile_relative(profile, profile.hub.cache_dir)
    if profile.model.revision:
        kwargs["revision"] = profile.model.revision
    if patterns:
        kwargs["allow_patterns"] = patterns
    try:
        path = snapshot_download(profile.model.source, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise _download_error(e, profile.model.source) from None
    return Path(path)


# -- pack ----------------------------------------------------------------------------------


class _HashingReader(io.RawIOBase):
    """A file wrapper that hashes what tarfile reads through it."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        b = self.f.read(size)
        self.h.update(b)
        self.n += len(b)
        return b

    def readinto(self, buf) -> int:
        b = self.read(len(buf))
        buf[: len(b)] = b
        return len(b)


def model_files(root: Path) -> list[tuple[str, Path]]:
    """(archive name under model/, file on disk) for a model folder or one file."""
    if root.is_file():
        return [(f"model/{root.name}", root)]
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if ".cache" in rel.parts or rel.name == MANIFEST or ".git" in rel.parts:
            continue
        if p.is_file():  # follows symlinks (hub cache snapshots link into blobs/)
            out.append(("model/" + rel.as_posix(), p))
    return out


def pack_model(profile: Profile, output: Path, *, progress: Progress = _quiet) -> dict:
    """Write model + profile + manifest to `output` (a tar). Returns a summary."""
    from llmdeploy_cli.models.cache import find_local
    from llmdeploy_cli.models.completeness import model_dir_problems

    root = profile.model_path() or find_local(profile.model.source, profile)
    if root is None or not root.exists():
        raise PreflightError(
            f"no local copy of {profile.model.source} to pack",
            hint="download it first: llmctl pull PROFILE",
        )
    need_gguf = facts.needs_gguf(facts.backend_of(profile))
    fails = [p for p in model_dir_problems(root, need_gguf=need_gguf) if p.level == "fail"]
    if fails:
        raise PreflightError(
            f"{root} is not a complete model: {fails[0].message}",
            hint=fails[0].fix,
            details=fails,
        )
    if profile.path is None or not profile.path.is_file():
        raise UsageError("pack needs the profile as a file")
    files = model_files(root)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.partial")
    entries = []
    total = 0
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
            for i, (name, path) in enumerate(files, 1):
                size = path.stat().st_size
                progress(f"[{i}/{len(files)}] {name} ({size:,} bytes)")
                info = tarfile.TarInfo(name)
                info.size = size
                info.mtime = int(path.stat().st_mtime)
                info.mode = 0o644
                with open(path, "rb") as f:
                    reader = _HashingReader(f)
                    tar.addfile(info, reader)
                if reader.n != size:
                    raise LlmctlError(f"{path} changed size while it was packed")
                entries.append({"path": name, "size": size, "sha256": reader.h.hexdigest()})
                total += size
            text = profile.path.read_bytes()
            _add_bytes(tar, PROFILE, text)
            entries.append(
                {"path": PROFILE, "size": len(text), "sha256": hashlib.sha256(text).hexdigest()}
            )
            manifest = {
                "format": FORMAT,
                "version": 1,
                "name": profile.name,
                "backend": profile.backend,
                "source": profile.model.source,
                "revision": profile.model.revision,
                "model": "model/" + root.name if root.is_file() else "model",
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": entries,
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"archive": str(output), "files": len(files), "bytes": total, "model": str(root)}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# -- unpack --------------------------------------------------------------------------------


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return (
        bool(name)
        and not p.is_absolute()
        and ".." not in p.parts
        and "\\" not in name
        and not name.startswith(("/", "~"))
        and all(part not in ("", ".") for part in name.split("/"))
    )


def unpack_model(archive: Path, to: Path, *, progress: Progress = _quiet) -> dict:
    """Verify and unpack a pack archive into `to`; write `to`/profile.yml. Returns a summary."""
    archive, to = Path(archive), Path(to)
    if not archive.is_file():
        raise UsageError(f"{archive} does not exist")
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise UsageError(f"{archive} is not a tar archive: {e}") from None
    with tar:
        members = tar.getmembers()
        by_name: dict[str, tarfile.TarInfo] = {}
        for m in members:
            if not _safe_name(m.name):
                raise LlmctlError(
                    f"refusing {archive}: unsafe path {m.name!r} (absolute or '..')",
                    hint="only unpack archives written by llmctl pack",
                )
            if not (m.isfile() or m.isdir()):
                raise LlmctlError(
                    f"refusing {archive}: {m.name!r} is a link or special file",
                    hint="only unpack archives written by llmctl pack",
                )
            by_name[m.name] = m
        if MANIFEST not in by_name:
            raise LlmctlError(
                f"{archive} has no {MANIFEST}: not written by llmctl pack",
                hint="pack it with llmctl pack PROFILE -o model.tar",
            )
        manifest = json.loads(tar.extractfile(by_name[MANIFEST]).read())
        if manifest.get("format") != FORMAT:
            raise LlmctlError(f"{archive}: unknown manifest format {manifest.get('format')!r}")
        entries = {e["path"]: e for e in manifest["files"]}
        for name in entries:
            if not _safe_name(name):
                raise LlmctlError(f"refusing {archive}: unsafe path {name!r} in the manifest")
        extra = [n for n, m in by_name.items() if m.isfile() and n != MANIFEST and n not in entries]
        missing = [n for n in entries if n not in by_name]
        if extra or missing:
            raise LlmctlError(
                f"{archive} does not match its manifest: "
                + (f"unlisted {extra[:3]} " if extra else "")
                + (f"missing {missing[:3]}" if missing else ""),
                hint="pack it again",
            )
        to.mkdir(parents=True, exist_ok=True)
        base = to.resolve()
        written = 0
        for i, (name, entry) in enumerate(entries.items(), 1):
            dest = (base / name).resolve()
            if not dest.is_relative_to(base):
                raise LlmctlError(f"refusing {name!r}: it would land outside {to}")
            progress(f"[{i}/{len(entries)}] {name}")
            _extract_verified(tar, by_name[name], dest, entry)
            written += entry["size"]
    model_rel = manifest.get("model", "model")
    model_path = base / model_rel
    # the manifest next to the model lets `llmctl doctor --verify` re-hash it later
    manifest_home = model_path if model_path.is_dir() else model_path.parent
    (manifest_home / MANIFEST).write_text(json.dumps(manifest, indent=2))
    profile_path = _write_profile(base, model_path)
    return {
        "profile": str(profile_path),
        "model": str(model_path),
        "files": len(entries),
        "bytes": written,
        "verified": True,
    }


def _extract_verified(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, entry) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    h = hashlib.sha256()
    n = 0
    src = tar.extractfile(member)
    try:
        with open(tmp, "wb") as f:
            while block := src.read(CHUNK):
                h.update(block)
                n += len(block)
                f.write(block)
        if n != entry["size"] or h.hexdigest() != entry["sha256"]:
            raise LlmctlError(
                f"{member.name}: sha256 does not match the manifest (damaged in transfer?)",
                hint="copy the archive again and compare its size with the original",
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_profile(base: Path, model_path: Path) -> Path:
    import yaml

    from llmdeploy_cli.fsutil import atomic_write

    raw = (base / PROFILE).read_text(encoding="utf-8")
    data = yaml.safe_load(raw) or {}
    model = data.get("model") or {}
    if isinstance(model, str):
        model = {"source": model}
    model["source"] = str(model_path)
    model.pop("revision", None)
    data["model"] = model
    data["offline"] = True
    hub = data.get("hub")
    if isinstance(hub, dict):
        hub.pop("endpoint", None)
    head = (
        "# Written by llmctl unpack: model.source points at the unpacked, verified model;\n"
        "# offline: true keeps the engine off the network. The packed original is kept as\n"
        "# profile.orig.yml.\n"
    )
    os.replace(base / PROFILE, base / "profile.orig.yml")
    out = base / PROFILE
    atomic_write(out, head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return out


__all__ = ["model_files", "pack_model", "pull_model", "unpack_model"]
