"""`doctor --verify`: re-hash a model's files against a pack manifest (`llmctl pack`) or
the Hugging Face cache's blob names."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from llmdeploy_cli.errors import Problem

MANIFEST = "llmctl-manifest.json"  # written by `llmctl pack` next to the model's files


def sha256_file(path: Path, chunk: int = 4 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(path: Path, chunk: int = 4 * 1024 * 1024) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_model_files(model_dir: Path | None) -> list[Problem]:
    """Re-hash the model's files: against a pack manifest, else the HF cache's blob names."""
    if model_dir is None or not model_dir.exists():
        return [Problem("verify", "skip", "no local model to verify")]
    if model_dir.is_file():
        if (model_dir.parent / MANIFEST).is_file():
            return _verify_manifest(model_dir.parent, model_dir.parent / MANIFEST)
        return _verify_hf_cache(model_dir.parent, only=[model_dir])
    manifest = model_dir / MANIFEST
    if manifest.is_file():
        return _verify_manifest(model_dir, manifest)
    return _verify_hf_cache(model_dir)


def _verify_manifest(root: Path, manifest: Path) -> list[Problem]:
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [
            Problem(
                "verify", "fail", f"{manifest} is unreadable: {e}", fix="unpack the archive again"
            )
        ]
    bad, missing = [], []
    for entry in files:
        if not entry["path"].startswith("model/"):
            continue
        p = root / entry["path"][len("model/") :]
        if not p.is_file():
            missing.append(entry["path"])
        elif p.stat().st_size != entry["size"] or sha256_file(p) != entry["sha256"]:
            bad.append(entry["path"])
    if bad or missing:
        return [
            Problem(
                "verify",
                "fail",
                f"{len(bad)} file(s) differ from the manifest, {len(missing)} missing: "
                f"{', '.join((bad + missing)[:4])}",
                fix="unpack the archive again (llmctl unpack model.tar --to DIR)",
                data={"changed": bad, "missing": missing},
            )
        ]
    n = sum(1 for e in files if e["path"].startswith("model/"))
    return [Problem("verify", "pass", f"{n} files match {manifest.name}")]


def _verify_hf_cache(root: Path, only: list[Path] | None = None) -> list[Problem]:
    files = only or sorted(p for p in root.rglob("*") if p.is_file())
    checked, bad, unknown = 0, [], 0
    for p in files:
        target = Path(os.path.realpath(p))
        name = target.name
        if target.parent.name != "blobs" or len(name) not in (40, 64):
            unknown += 1
            continue
        digest = sha256_file(target) if len(name) == 64 else git_blob_sha1(target)
        checked += 1
        if digest != name:
            bad.append(str(p.relative_to(root)) if p.is_relative_to(root) else str(p))
    if bad:
        return [
            Problem(
                "verify",
                "fail",
                f"{len(bad)} file(s) do not match their cache blob name: {', '.join(bad[:4])}",
                fix="delete them and download again (llmctl pull PROFILE)",
                data={"changed": bad},
            )
        ]
    if checked == 0:
        return [
            Problem(
                "verify",
                "skip",
                "no pack manifest and not a Hugging Face cache snapshot: nothing to verify against",
                fix="pack/unpack the model with llmctl to get a manifest",
            )
        ]
    extra = f" ({unknown} not in the cache's blob store)" if unknown else ""
    return [Problem("verify", "pass", f"{checked} files match their cache blob hashes{extra}")]
