"""What a backend declares about its engine: the capabilities the core asks instead of
keeping lists of engine names.

A leaf module (standard library only): the core, every backend and the models code import
it. Each capability is a ClassVar on `llmdeploy_cli.backend.Backend` that starts as
`UNDECLARED`; a backend sets every one, using `NOT_SUPPORTED` for what its engine lacks
(docs/writing-a-backend.md says what each command then does). A contract test
(tests/backends/test_capabilities.py) fails for a registered backend that leaves one
undeclared.

- `model_formats`: frozenset of ModelFormat, what model sources the engine loads;
- `tasks`: frozenset of Task, what it serves (`routes(tasks)`: the OpenAI paths);
- `runs_on_cpu`: bool (False is "not supported");
- `container`: ContainerSpec, or NOT_SUPPORTED (no image and no known cache path);
- `install`: Recipe for `llmctl engine install`, or NOT_SUPPORTED;
- `hub`: HubVars, the offline, ModelScope and cache variables its build() sets;
- `flag_source`: FlagSource, how flag_snapshot.py reads its CLI parser, or NOT_SUPPORTED;
- `memory`: how it sizes its memory (the rule objects are llmdeploy_cli.models' own).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class _Marker:
    """A named singleton (NOT_SUPPORTED, UNDECLARED); falsy, so `if cap:` skips both."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return self._name  # copies and pickles stay the same object


NOT_SUPPORTED: Any = _Marker("NOT_SUPPORTED")
"""The engine lacks this capability; the commands that need it say so (or skip it)."""
UNDECLARED: Any = _Marker("UNDECLARED")
"""The base class default: the backend has not said. The contract test refuses it."""

NAMES = (
    "model_formats",
    "tasks",
    "runs_on_cpu",
    "container",
    "install",
    "hub",
    "flag_source",
    "memory",
)


def is_declared(value: object) -> bool:
    return value is not UNDECLARED


def supported(value: object) -> bool:
    """Declared and not NOT_SUPPORTED."""
    return value is not UNDECLARED and value is not NOT_SUPPORTED


# -- model formats and tasks -------------------------------------------------------------


class ModelFormat(str, enum.Enum):
    HF_FOLDER = "hf-folder"  # Hugging Face layout (config.json + weights): a folder or hub id
    GGUF = "gguf"  # one GGUF file (or a folder of them)
    REGISTRY_NAME = "registry-name"  # a name in the engine's own model registry


class Task(str, enum.Enum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RERANK = "rerank"


ROUTES: Mapping[Task, tuple[str, ...]] = MappingProxyType(
    {
        Task.CHAT: ("/v1/chat/completions",),
        Task.COMPLETIONS: ("/v1/completions",),
        Task.EMBEDDINGS: ("/v1/embeddings",),
        Task.RERANK: ("/v1/rerank",),
    }
)

# A profile's model.task -> the Task it serves.
PROFILE_TASKS: Mapping[str, Task] = MappingProxyType(
    {"chat": Task.CHAT, "embedding": Task.EMBEDDINGS, "rerank": Task.RERANK}
)


def task_of(task: Task | str) -> Task:
    """A Task from a Task, its value, or a profile's model.task ("embedding")."""
    if isinstance(task, Task):
        return task
    return PROFILE_TASKS.get(task) or Task(task)


def routes(tasks: Iterable[Task | str]) -> tuple[str, ...]:
    """The OpenAI-compatible paths that serve these tasks, in Task order, no repeats."""
    want = {task_of(t) for t in tasks}
    out: list[str] = []
    for task in Task:
        if task in want:
            out += [r for r in ROUTES[task] if r not in out]
    return tuple(out)


# -- container ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerSpec:
    """How the engine runs in a container (export kubernetes/compose)."""

    # The engine project's image, `{version}` = the engine version argv was rendered for;
    # None: no image llmctl knows (export then needs --image).
    image_template: str | None
    cache_path: str  # where the engine keeps downloads inside its image (as root)
    cache_env: str | None = None  # the variable that moves that cache (HF_HOME)


# -- install -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    """A prebuilt release archive that `llmctl engine install` downloads, checks against the
    release's published sha256 list and unpacks into the engine's folder (no Python env).

    URLs are `{base}/{path}`: `path` and `sha256_path` take `{version}` and `{arch}` (the
    release's name for this machine: `arches` maps `uname -m` to it); `base` is the
    release host, replaced by the variable `base_env` when set (a mirror, or a file:// URL).
    """

    base: str
    base_env: str
    path: str  # "v{version}/ollama-linux-{arch}.tar.zst"
    sha256_path: str  # "v{version}/sha256sum.txt": lines "HASH  [./]FILE"
    arches: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """How `llmctl engine install NAME` builds the engine's own virtual environment.

    `name`, `distribution` and `executable` are the backend's (the catalog fills them in);
    a backend declares only the install facts.
    """

    default_version: str
    devices: tuple[str, ...]
    # Requirements after torch, `{version}` filled in. Kept as small as the served task
    # needs: the big "[all]"-style extras pull video/audio/quantization stacks.
    packages: tuple[str, ...]
    # The torch installed first, per device (None: let the engine's own pins choose).
    torch: Mapping[str, str | None] = field(default_factory=dict)
    prefer_uv: bool = False  # pip alone is known to fail on this engine's pins
    notes: tuple[str, ...] = ()
    # Where the committed constraints files NAME-VERSION[-DEVICE].txt live: "package:folder".
    constraints: str = "llmdeploy_cli:data/constraints"
    # The package index the engine's packages come from, per device (a project's own index
    # of CUDA builds); unset: the index pip/uv are configured with.
    index_url: Mapping[str, str] = field(default_factory=dict)
    # A release archive instead of packages (packages, torch and constraints then unused).
    archive: Archive | None = None
    name: str = ""
    distribution: str = ""
    # The command the install must leave in bin/ (default: the backend's executable).
    executable: str = ""

    def requirements(self, version: str) -> list[str]:
        return [p.format(version=version) for p in self.packages]

    def install_requirements(self, version: str, device: str) -> list[str]:
        """Everything an install asks for: the torch it installs first, then the packages."""
        torch = self.torch.get(device)
        return ([f"torch=={torch}"] if torch else []) + self.requirements(version)


# -- hub and offline variables -----------------------------------------------------------

HF_OFFLINE: Mapping[str, str] = MappingProxyType(
    {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
)


@dataclass(frozen=True)
class HubCache:
    """Where the engine's process looks for a hub id in a hub's download cache, read from
    its environment: the first variable of `env` that is set, with its sub-folder joined;
    else `default` (~ expanded)."""

    env: tuple[tuple[str, str], ...]  # (variable, sub-folder), first set wins
    default: str

    def folder(self, environ: Mapping[str, str]) -> tuple[str, str]:
        """(the cache folder, what chose it: "HF_HOME" or "default")."""
        import os

        for var, sub in self.env:
            value = environ.get(var)
            if value:
                base = os.path.expanduser(value)
                return (os.path.join(base, sub) if sub else base), var
        return os.path.expanduser(self.default), "default"


# huggingface_hub/constants.py: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else
# $HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface (~/.cache).
HF_CACHE = HubCache(
    env=(
        ("HF_HUB_CACHE", ""),
        ("HUGGINGFACE_HUB_CACHE", ""),
        ("HF_HOME", "hub"),
        ("XDG_CACHE_HOME", "huggingface/hub"),
    ),
    default="~/.cache/huggingface/hub",
)
# modelscope/utils/file_utils.py get_modelscope_cache_dir: MODELSCOPE_CACHE, else
# ~/.cache/modelscope/hub (models under models/ORG/NAME, dots stored as ___).
MODELSCOPE_CACHE = HubCache(env=(("MODELSCOPE_CACHE", ""),), default="~/.cache/modelscope/hub")
HUB_CACHES: Mapping[str, HubCache] = MappingProxyType(
    {"huggingface": HF_CACHE, "modelscope": MODELSCOPE_CACHE}
)


@dataclass(frozen=True)
class HubVars:
    """The variables the engine reads about hubs, exactly as its build() sets them."""

    offline: Mapping[str, str]  # set when the profile is offline
    # Set when hub.source is modelscope; NOT_SUPPORTED: the engine cannot download from it.
    modelscope: Mapping[str, str] | Any = NOT_SUPPORTED
    source_env: str | None = None  # set to hub.source in every case (XINFERENCE_MODEL_SRC)
    cache_env: str | None = None  # where it keeps downloaded models (HF_HOME, OLLAMA_MODELS)
    endpoint_env: str | None = None  # carries hub.endpoint (HF_ENDPOINT); None: no mirror
    # Where the engine looks for a hub id, per hub (doctor reports a model present only
    # there); an engine that moves the caches (Xinference) declares its own.
    caches: Mapping[str, HubCache] = field(default_factory=lambda: HUB_CACHES)
    # The folder in cache_env when it is unset, for an engine that always writes its own
    # store there (Ollama's models, Xinference's home); doctor checks it can be written.
    store_default: str | None = None
    # Where the engine's system service keeps that store (a server llmctl does not start).
    service_store: str | None = None

    def cache_for(self, source: str) -> HubCache:
        """The cache the engine reads a hub id from: the ModelScope one only when it can
        download from ModelScope (and the profile says so), else the Hugging Face one."""
        if source == "modelscope" and supported(self.modelscope) and source in self.caches:
            return self.caches[source]
        return self.caches.get("huggingface", HF_CACHE)

    def required(self, *, source: str, offline: bool, endpoint: str | None) -> dict[str, str]:
        """The variables (and values) the server's environment must carry."""
        need: dict[str, str] = dict(self.offline) if offline else {}
        if source == "modelscope" and supported(self.modelscope):
            need.update(self.modelscope)
        if self.source_env:
            need[self.source_env] = source
        if endpoint and self.endpoint_env:
            need[self.endpoint_env] = endpoint
        return need


# -- flag snapshots ----------------------------------------------------------------------


@dataclass(frozen=True)
class FlagCommand:
    """One command whose parser flag_snapshot.py reads, declared as data."""

    command: str  # how argv starts: "vllm serve", "python -m sglang.launch_server"
    reader: str  # "argparse" | "click" | "typer"
    # "module:attr.path": the parser / click command / Typer app, or a function returning it
    target: str
    subcommand: str = ""  # a Typer app's (or click group's) subcommand to read
    passes_unknown: bool = False  # unknown --key value pairs are forwarded, not refused
    note: str = ""


@dataclass(frozen=True)
class FlagSource:
    """How to snapshot the engine's CLI parser, inside the engine's own environment.

    Either `commands` (data), or `reader_file`: a standalone script shipped with the
    backend (stdlib + the engine, never llmdeploy_cli) defining `read(walkers) -> list`
    of command documents; `walkers` is flag_snapshot.py itself (its parser walkers).
    """

    distribution: str  # whose version the snapshot records
    commands: tuple[FlagCommand, ...] = ()
    reader_file: str | None = None
    # Where committed snapshots ENGINE-VERSION.json live: "package:folder".
    snapshots: str = "llmdeploy_cli:data/flags"

    def as_spec(self, engine: str) -> dict:
        """The JSON document flag_snapshot.py takes (--spec)."""
        return {
            "engine": engine,
            "distribution": self.distribution,
            "commands": [vars(c).copy() for c in self.commands],
            "reader_file": self.reader_file,
        }


# -- what the plan and the checks may suggest, and what the engine refuses -----------------
# Optional declarations (a backend without them gets no suggestion and no such check):
# `remedies` (Remedies), `context_limit` (ContextLimit), `card_limits` (CardLimits),
# `gpu_free_devices` (values of an option that put the engine on a non-NVIDIA device).


@dataclass(frozen=True)
class Remedy:
    """One change a suggestion names: a profile key (resources.X, model.X, options.X) and the
    value to suggest (None: the plan works it out), with the reason shown."""

    key: str
    value: Any = None
    why: str = ""


@dataclass(frozen=True)
class Remedies:
    """Which suggestions the engine takes, by kind; None: never suggested for it. Every one
    must be a key the backend accepts (`supports` or its options), with a value validate
    takes: tests/models/test_remedy_verdicts.py applies each to a profile and validates it."""

    more_gpus: Remedy | None = None  # resources.tensor_parallel (the value: the plan's)
    shorter_context: Remedy | None = None  # resources.max_model_len (the value: the plan's)
    memory_fraction: Remedy | None = None  # the engine's memory fraction key
    kv_cache_dtype: Remedy | None = None  # a smaller KV cache dtype, value given
    quantization: Remedy | None = None  # weights in fewer bits, value given
    fewer_seqs: Remedy | None = None  # resources.max_num_seqs

    def all(self) -> tuple[Remedy, ...]:
        return tuple(
            r
            for r in (
                self.more_gpus,
                self.shorter_context,
                self.memory_fraction,
                self.kv_cache_dtype,
                self.quantization,
                self.fewer_seqs,
            )
            if r is not None
        )


NO_REMEDIES = Remedies()


@dataclass(frozen=True)
class ContextLimit:
    """What the engine does with a context length (max_model_len) above the model's own
    limit (vLLM's derivation: llmdeploy_cli/models/shape.py `derived_max_len`)."""

    refuses: bool  # True: it exits at start
    override_env: str | None = None  # the engine's variable that lets it through anyway
    source: str = ""


@dataclass(frozen=True)
class CardLimits:
    """The oldest NVIDIA card the engine runs on, as compute capability (major, minor):
    for any model, per dtype the profile or the model's config asks, per quantization."""

    minimum: tuple[int, int] | None = None
    dtype: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    quantization: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    source: str = ""

    def needs(self, *, dtype: str | None, quantization: str | None) -> list[tuple]:
        """[(capability, what needs it)] for this dtype and quantization, highest first."""
        out = []
        if self.minimum:
            out.append((self.minimum, "the engine"))
        if dtype and dtype in self.dtype:
            out.append((self.dtype[dtype], f"dtype {dtype}"))
        q = (quantization or "").lower()
        if q and q in self.quantization:
            out.append((self.quantization[q], f"quantization {q}"))
        return sorted(out, reverse=True)


__all__ = [
    "HF_CACHE",
    "HF_OFFLINE",
    "HUB_CACHES",
    "MODELSCOPE_CACHE",
    "Archive",
    "NO_REMEDIES",
    "NAMES",
    "NOT_SUPPORTED",
    "PROFILE_TASKS",
    "ROUTES",
    "UNDECLARED",
    "CardLimits",
    "ContainerSpec",
    "ContextLimit",
    "FlagCommand",
    "FlagSource",
    "HubCache",
    "HubVars",
    "ModelFormat",
    "Recipe",
    "Remedies",
    "Remedy",
    "Task",
    "is_declared",
    "routes",
    "supported",
    "task_of",
]
