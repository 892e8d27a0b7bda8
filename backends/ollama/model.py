"""Ollama's options and the model side of a plan: pure, no I/O (facts: see __init__)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmdeploy_cli.profile import Profile

VIA = "ollama client library"
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
# `ollama create --quantize` / /api/create "quantize" (docs/api.md, Quantization types).
QUANTIZE_TYPES = ("q4_K_M", "q4_K_S", "q8_0")

# Modelfile PARAMETER names and types (api/types.go Options + Runner, Ollama 0.32).
PARAMETERS: dict[str, type] = {
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
    "draft_num_predict": int,
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "repeat_last_n": int,
    "temperature": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": list,
}

# A Go time.ParseDuration string ("5m", "1h30m", "-1m", "0").
_GO_DURATION = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")
# One part of an Ollama model name (types/model/name.go isValidPart).
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME = re.compile(rf"^({_PART}/){{0,2}}{_PART}(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,79}})?$")

# Keys that only configure the server process: meaningless when someone else runs it.
SERVER_ONLY_KEYS = {
    "resources.max_num_seqs": "OLLAMA_NUM_PARALLEL",
    "resources.kv_cache_dtype": "OLLAMA_KV_CACHE_TYPE",
    "resources.visible_devices": "CUDA_VISIBLE_DEVICES",
    "hub.cache_dir": "OLLAMA_MODELS",
    "options.models_dir": "OLLAMA_MODELS",
    "options.context_length": "OLLAMA_CONTEXT_LENGTH",
    "options.max_loaded_models": "OLLAMA_MAX_LOADED_MODELS",
    "options.max_queue": "OLLAMA_MAX_QUEUE",
    "options.flash_attention": "OLLAMA_FLASH_ATTENTION",
    "options.origins": "OLLAMA_ORIGINS",
    "options.no_cloud": "OLLAMA_NO_CLOUD",
    "env": "the variables in env",
}

# Better hints than the generic one for common keys Ollama cannot honour.
HINTS = {
    "server.api_key_env": "Ollama has no API key of its own; to require one, put a reverse "
    "proxy that checks keys in front of it (docs/backends/ollama.md)",
    "model.chat_template": "Ollama templates are Go templates, not Jinja: put one in "
    "options.template (written to the Modelfile as TEMPLATE)",
    "resources.gpu_memory_utilization": "Ollama fits layers to free memory by itself; "
    "reserve memory with env OLLAMA_GPU_OVERHEAD (bytes) or limit layers with "
    "options.parameters.num_gpu",
    "resources.tensor_parallel": "Ollama splits a model that does not fit one GPU across "
    "all visible GPUs by itself; see env OLLAMA_SCHED_SPREAD",
    "model.dtype": "an Ollama model's precision is fixed by its GGUF file; re-quantize with "
    "model.quantization (ollama create --quantize)",
    "model.revision": "pin a version with the tag of the name instead (name:tag)",
}


def _check_text(v: str | None) -> str | None:
    if v is not None and '"""' in v:
        raise ValueError('cannot contain """ (the Modelfile quote)')
    return v


class OllamaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models_dir: str | None = Field(
        None, description="Model store (OLLAMA_MODELS); default ~/.ollama/models"
    )
    context_length: int | None = Field(
        None, gt=0, description="Server-wide default context (OLLAMA_CONTEXT_LENGTH)"
    )
    keep_alive: int | str | None = Field(
        None,
        description="How long a model stays loaded: Go duration ('10m', '-1m' forever) or "
        "seconds (OLLAMA_KEEP_ALIVE, and keep_alive of the preload request)",
    )
    max_loaded_models: int | None = Field(
        None, ge=0, description="OLLAMA_MAX_LOADED_MODELS (0: 3 per GPU)"
    )
    max_queue: int | None = Field(None, gt=0, description="OLLAMA_MAX_QUEUE (default 512)")
    flash_attention: bool | None = Field(None, description="OLLAMA_FLASH_ATTENTION")
    origins: list[str] | None = Field(None, description="Extra CORS origins (OLLAMA_ORIGINS)")
    no_cloud: bool | None = Field(
        None, description="OLLAMA_NO_CLOUD; unset: on when the profile is offline"
    )
    template: str | None = Field(None, description="Modelfile TEMPLATE (a Go template)")
    system: str | None = Field(None, description="Modelfile SYSTEM message")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Modelfile PARAMETER lines (temperature, stop, num_gpu, ...); the "
        "context length is resources.max_model_len",
    )
    pull: Literal["missing", "always"] = Field(
        "missing", description="Pull a model that is already local again (checks for updates)?"
    )
    preload: bool = Field(True, description="Load the model once it exists (POST /api/generate)")

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, v):
        if isinstance(v, str) and not _GO_DURATION.match(v.strip()):
            raise ValueError("must be a Go duration such as '10m', '24h' or '-1m', or seconds")
        return v.strip() if isinstance(v, str) else v

    @field_validator("template", "system")
    @classmethod
    def _quotable(cls, v):
        return _check_text(v)

    @field_validator("origins")
    @classmethod
    def _origins(cls, v):
        if v is not None and any("," in o for o in v):
            raise ValueError("one origin per list item (OLLAMA_ORIGINS is comma-separated)")
        return v

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, v: dict) -> dict:
        out: dict[str, Any] = {}
        for name, value in v.items():
            if name == "num_ctx":
                raise ValueError("set the context length with resources.max_model_len")
            kind = PARAMETERS.get(name)
            if kind is None:
                raise ValueError(
                    f"unknown Modelfile parameter {name!r} (known: {', '.join(sorted(PARAMETERS))})"
                )
            out[name] = _coerce(name, kind, value)
        return out


def _coerce(name: str, kind: type, value: Any) -> Any:
    if kind is list:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(s, str) and s for s in items):
            raise ValueError(f"parameter {name!r} takes a string or a list of strings")
        for s in items:
            if "\n" in s or '"' in s:
                raise ValueError(f'parameter {name!r}: a value cannot contain a newline or "')
        return list(items)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"parameter {name!r} takes true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"parameter {name!r} takes a number")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"parameter {name!r} takes an integer")
        return int(value)
    return float(value)


# -- the model side of a plan (pure) -----------------------------------------------------


def tagged(name: str) -> str:
    """The name Ollama lists for `name`: `:latest` added when no tag, `library/` dropped."""
    head, _, last = name.rpartition("/")
    if ":" not in last:
        last += ":latest"
    if head == "library":  # the default namespace is not shown (Name.DisplayShortest)
        head = ""
    return f"{head}/{last}" if head else last


@dataclass(frozen=True)
class ModelSpec:
    """What after_ready must do so that `served` exists, and how render shows it."""

    served: str  # the exact name requests carry and /v1/models lists
    pull_name: str | None = None  # pull this registry name first
    create: bool = False  # create `served` (from `from_name` or the GGUF `local`)
    from_name: str | None = None
    local: str | None = None  # absolute GGUF file, or a directory holding *.gguf
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    quantize: str | None = None


def model_spec(profile: Profile, opts: OllamaOptions) -> ModelSpec:
    m, r = profile.model, profile.resources
    params: dict[str, Any] = {}
    if r.max_model_len:
        params["num_ctx"] = r.max_model_len
    if r.device == "cpu":
        params["num_gpu"] = 0  # offload no layers to a GPU
    params.update(opts.parameters)
    common = dict(
        parameters=params, template=opts.template, system=opts.system, quantize=m.quantization
    )
    local = profile.model_path()
    if local is not None:
        return ModelSpec(
            served=tagged(profile.served_name), create=True, local=str(local), **common
        )
    pulled = tagged(m.source)
    derive = bool(params or opts.template or opts.system or m.quantization) or (
        m.served_name is not None and tagged(m.served_name) != pulled
    )
    if not derive:
        return ModelSpec(served=pulled, pull_name=m.source)
    return ModelSpec(
        served=tagged(profile.served_name),
        pull_name=m.source,
        create=True,
        from_name=m.source,
        **common,
    )


def _quote(value: str) -> str:
    """Ollama's parser.quote: quote a value with a newline or outer spaces."""
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


def _param_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return _quote(str(v))


def modelfile_text(spec: ModelSpec, profile: Profile) -> str:
    lines = [
        f"# Modelfile written by llmctl for profile '{profile.name}'.",
        f"# Build by hand: ollama create {spec.served} -f <this file>",
        f"FROM {spec.local or spec.from_name}",
    ]
    for name, value in spec.parameters.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {name} {_param_value(v)}")
    if spec.template is not None:
        lines.append(f'TEMPLATE """{spec.template}"""')
    if spec.system is not None:
        lines.append(f'SYSTEM """{spec.system}"""')
    return "\n".join(lines) + "\n"


def _expand_home(path: str, environ) -> str:
    """~ expanded from the render environment (so a golden render is the same everywhere)."""
    home = environ.get("HOME") if environ else None
    if home and (path == "~" or path.startswith("~/")):
        return home + path[1:]
    return os.path.expanduser(path)


def _keepalive_flag(v: int | str) -> str:
    return f"{v}s" if isinstance(v, int) else v
