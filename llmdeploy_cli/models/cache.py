"""Where a hub id lives on this disk: `find_local` resolves a hub id or a registry pull
name to a folder/file already on disk, looking only at caches (Hugging Face, ModelScope,
Xinference, the profile's cache dir, Ollama's model store).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.models.readers import read_json

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.profile import Profile


# -- finding a hub id on disk --------------------------------------------------------------

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source)) and not source.startswith((".", "/", "~"))


def _env(environ, name: str) -> str | None:
    v = environ.get(name)
    return os.path.expanduser(v) if v else None


def hf_cache_dirs(profile: Profile | None = None, environ=None) -> list[Path]:
    """Hugging Face hub caches to look in, most specific first."""
    environ = os.environ if environ is None else environ
    out: list[Path] = []
    if profile is not None and profile.hub.cache_dir:
        base = _cache_dir(profile)
        out += [base / "hub", base]  # it is HF_HOME for the engine; accept a hub cache too
    if _env(environ, "HF_HUB_CACHE"):
        out.append(Path(_env(environ, "HF_HUB_CACHE")))
    if _env(environ, "HUGGINGFACE_HUB_CACHE"):
        out.append(Path(_env(environ, "HUGGINGFACE_HUB_CACHE")))
    if _env(environ, "HF_HOME"):
        out.append(Path(_env(environ, "HF_HOME")) / "hub")
    if _env(environ, "XINFERENCE_HOME"):  # Xinference's HUGGINGFACE_HUB_CACHE (and a hub/)
        home = Path(_env(environ, "XINFERENCE_HOME"))
        out += [home / "huggingface", home / "huggingface" / "hub"]
    xdg = _env(environ, "XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    out.append(Path(xdg) / "huggingface" / "hub")
    return _dedupe(out)


def modelscope_cache_dirs(profile: Profile | None = None, environ=None) -> list[Path]:
    environ = os.environ if environ is None else environ
    out: list[Path] = []
    if profile is not None and profile.hub.cache_dir:
        out.append(_cache_dir(profile))
    if _env(environ, "MODELSCOPE_CACHE"):
        out.append(Path(_env(environ, "MODELSCOPE_CACHE")))
    if _env(environ, "XINFERENCE_HOME"):
        out.append(Path(_env(environ, "XINFERENCE_HOME")) / "modelscope")
    out.append(Path(os.path.expanduser("~/.cache/modelscope")))
    return _dedupe(out)


def _cache_dir(profile: Profile) -> Path:
    """hub.cache_dir as build() hands it to the engine (relative: the profile's folder)."""
    from llmdeploy_cli.backend import profile_relative

    return Path(profile_relative(profile, profile.hub.cache_dir or ""))


def _dedupe(paths: list[Path]) -> list[Path]:
    seen, out = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def hf_snapshot(cache: Path, repo_id: str, revision: str | None = None) -> Path | None:
    """<cache>/models--org--name/snapshots/<commit> for `revision` (a branch or tag through
    refs/, or a commit). Without a revision: refs/main, else the newest snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    rev = revision or "main"
    ref = repo / "refs" / rev
    if ref.is_file():
        commit = ref.read_text().strip()
        cand = snaps / commit
        return cand if cand.is_dir() else None
    if (snaps / rev).is_dir():
        return snaps / rev
    if revision and len(revision) >= 7:  # a short commit hash
        hits = [p for p in snaps.iterdir() if p.is_dir() and p.name.startswith(revision)]
        if len(hits) == 1:
            return hits[0]
    if revision is not None:
        return None
    found = [p for p in snaps.iterdir() if p.is_dir()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def modelscope_folder(cache: Path, repo_id: str) -> Path | None:
    org, _, name = repo_id.partition("/")
    names = [name, name.replace(".", "___")]  # ModelScope stores dots as ___
    for base in (cache / "hub" / "models", cache / "models", cache / "hub", cache):
        for n in names:
            cand = base / org / n
            if cand.is_dir() and any(cand.iterdir()):
                return cand
    return None


# The registry store llmctl reads (Ollama's layout: manifests/ and blobs/) and its default.
REGISTRY_STORE_ENV = "OLLAMA_MODELS"
REGISTRY_STORE_DEFAULT = "~/.ollama/models"


def ollama_models_dir(environ=None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(_env(environ, REGISTRY_STORE_ENV) or os.path.expanduser(REGISTRY_STORE_DEFAULT))


def ollama_manifest(name: str, environ=None, store: Path | None = None) -> Path | None:
    """The manifest of a pull name (NAME, NAME:TAG, NS/NAME:TAG) in Ollama's model store
    (`store`, else OLLAMA_MODELS / the default)."""
    base = (store or ollama_models_dir(environ)) / "manifests"
    if not base.is_dir():
        return None
    model, _, tag = name.partition(":")
    tag = tag or "latest"
    parts = model.split("/")
    if len(parts) == 1:
        rel = Path("library", parts[0], tag)
    elif len(parts) == 2:
        rel = Path(parts[0], parts[1], tag)
    else:  # host/ns/name
        cand = base / Path(*parts) / tag
        return cand if cand.is_file() else None
    for registry_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        cand = registry_dir / rel
        if cand.is_file():
            return cand
    return None


def ollama_model_blob(manifest: Path, environ=None, store: Path | None = None) -> Path | None:
    """The GGUF blob a manifest's model layer points at (blobs/sha256-<hex>)."""
    data, _ = read_json(manifest)
    for layer in (data or {}).get("layers", []):
        if str(layer.get("mediaType", "")).endswith(".model"):
            digest = str(layer.get("digest", "")).replace(":", "-")
            return (store or ollama_models_dir(environ)) / "blobs" / digest
    return None


def _in_store(name: str, store: Path) -> Path | None:
    man = ollama_manifest(name, store=store)
    if man is None:
        return None
    blob = ollama_model_blob(man, store=store)
    return blob if blob is not None and blob.exists() else None


def find_local(source: str, profile: Profile | None = None, environ=None) -> Path | None:
    """A local folder (or file) for `source` without touching the network, or None.

    Local paths are returned as they are when they exist. A hub id is looked up in the
    Hugging Face cache (profile.hub.cache_dir, HF_HUB_CACHE, HF_HOME, XINFERENCE_HOME,
    ~/.cache/huggingface/hub; honouring model.revision and refs/main) and the ModelScope
    cache (MODELSCOPE_CACHE, XINFERENCE_HOME, ~/.cache/modelscope). For a backend whose
    model_formats has REGISTRY_NAME (Ollama) the source is a pull name, found in the model
    store (OLLAMA_MODELS, ~/.ollama/models): the model's GGUF blob is returned.
    """
    environ = os.environ if environ is None else environ
    if profile is not None and profile.model.source == source:
        local = profile.model_path()
        if local is not None:
            return local if local.exists() else None
    expanded = Path(os.path.expanduser(source))
    if expanded.exists() and (expanded.is_absolute() or source.startswith((".", "~"))):
        return expanded
    from llmdeploy_cli.models import facts

    by_name = profile is not None and facts.takes_registry_names(facts.backend_of(profile))
    if by_name or (":" in source and not looks_like_hub_id(source)):
        stores = [ollama_models_dir(environ)]
        hub = facts.hub_vars(facts.backend_of(profile)) if profile is not None else None
        if hub is not None and hub.service_store:  # the engine's system service keeps its own
            stores.append(Path(hub.service_store))
        for store in stores:
            if ollama_manifest(source, store=store) is not None:
                return _in_store(source, store)
        if by_name:
            return None
    if not looks_like_hub_id(source):
        return None
    revision = profile.model.revision if profile is not None else None
    hub = profile.hub.source if profile is not None else "huggingface"
    hf = [hf_snapshot(c, source, revision) for c in hf_cache_dirs(profile, environ)]
    ms = [modelscope_folder(c, source) for c in modelscope_cache_dirs(profile, environ)]
    order = ms + hf if hub == "modelscope" else hf + ms
    for cand in order:
        if cand is not None:
            return cand
    return None


# -- where the engine itself looks ---------------------------------------------------------


@dataclass
class Located:
    """A hub id or pull name, looked up where the profile's engine will look for it."""

    path: Path | None  # the copy the engine loads; None: it has none
    looked: list[str]  # the folders it looks in, each with what chose it
    elsewhere: Path | None = None  # a copy on disk that the engine will not find
    elsewhere_what: str = ""  # which cache that copy is in

    @property
    def where(self) -> str:
        return " or ".join(self.looked)


def engine_environ(profile: Profile, backend, plan, environ) -> dict[str, str]:
    """The environment the engine process gets from serve (supervise/session.py: the
    caller's, the plan's server env, the backend's serve-time additions)."""
    env = {**environ, **plan.server.command.env}
    try:
        from llmdeploy_cli.paths import state_dir

        env.update(backend.extra_env_for_serve(profile, str(state_dir())))
    except (AttributeError, OSError, ValueError):
        pass
    return {k: str(v) for k, v in env.items()}


def _origin(var: str, profile_env: dict, environ) -> str:
    if var == "default":
        return "the default"
    if var in profile_env:
        return f"{var} from the profile"
    return f"{var} from the environment"


def locate_for_engine(
    profile: Profile, backend, engine_env: dict[str, str], profile_env: dict, environ
) -> Located:
    """Where the profile's engine will find model.source (a hub id or a pull name), using
    only the backend's declared hub facts (capabilities.HubVars) and the engine's env."""
    from llmdeploy_cli.capabilities import HubVars
    from llmdeploy_cli.models import facts

    source = profile.model.source
    hub = facts.hub_vars(backend) or HubVars(offline={})
    if facts.takes_registry_names(backend):
        stores: list[tuple[Path, str]] = []
        var = hub.cache_env
        if profile.server.managed or not hub.service_store:
            value = engine_env.get(var) if var else None
            if value:
                stores.append((Path(os.path.expanduser(value)), _origin(var, profile_env, environ)))
            elif hub.store_default:
                stores.append((Path(os.path.expanduser(hub.store_default)), "the default"))
        else:  # someone else's server: the service's store (or the user's own)
            stores.append((Path(hub.service_store), "the system service's store"))
            if hub.store_default:
                stores.append((Path(os.path.expanduser(hub.store_default)), "the user's store"))
        looked = [f"{p} ({why})" for p, why in stores]
        for store, _ in stores:
            found = _in_store(source, store)
            if found is not None:
                return Located(found, looked)
        mine = {p for p, _ in stores}
        others = [Path(p) for p in (hub.service_store, hub.store_default) if p]
        for other in (Path(os.path.expanduser(str(p))) for p in others):
            if other not in mine and _in_store(source, other) is not None:
                return Located(None, looked, _in_store(source, other), f"the model store {other}")
        return Located(None, looked)
    if not looks_like_hub_id(source):
        return Located(None, [])
    cache = hub.cache_for(profile.hub.source)
    folder, var = cache.folder(engine_env)
    reads_modelscope = cache is hub.caches.get("modelscope")
    looked = [
        f"{folder} ({'ModelScope' if reads_modelscope else 'Hugging Face'} cache, "
        f"{_origin(var, profile_env, environ)})"
    ]
    root = Path(folder)
    if reads_modelscope:
        found = modelscope_folder(root, source)
    else:
        found = hf_snapshot(root, source, profile.model.revision)
    if found is not None:
        return Located(found, looked)
    # a copy the engine will not see: another Hugging Face cache, or the ModelScope one
    for c in hf_cache_dirs(profile, engine_env):
        if c != root:
            cand = hf_snapshot(c, source, profile.model.revision)
            if cand is not None:
                return Located(None, looked, cand, f"the Hugging Face cache {c}")
    for c in modelscope_cache_dirs(profile, engine_env):
        if c != root:
            cand = modelscope_folder(c, source)
            if cand is not None:
                return Located(None, looked, cand, f"the ModelScope cache {c}")
    return Located(None, looked)


def writable(folder: Path) -> str | None:
    """Why the engine could not write in `folder` (None: it can). A folder that does not
    exist yet must be creatable: its nearest existing parent a writable folder. An
    existing one is tried for real (a file created and removed), so a read-only mount is
    caught for root too."""
    import tempfile

    p = Path(folder)
    if p.exists():
        if not p.is_dir():
            return f"{p} is a file, not a folder"
        try:
            with tempfile.NamedTemporaryFile(dir=p, prefix=".llmctl-write-"):
                pass
        except OSError as e:
            return f"{p} cannot be written ({e.strerror or e})"
        return None
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{p} cannot be created: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{p} cannot be created: {parent} is not writable"
    return None
