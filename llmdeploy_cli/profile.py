"""The profile: one YAML file that says everything needed to serve one model.

Common keys mean the same on every backend; each backend translates them to its engine
(and refuses the ones it cannot honour). Engine-specific keys go under `options`, typed
by the backend; raw flags the schema does not model go in `extra_args`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from llmdeploy_cli.errors import ProfileError, ProfileIssue
from llmdeploy_cli.yamlfile import SourceMap, load_yaml

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelSpec(Section):
    source: str = Field(
        description="Local model directory, GGUF file, Ollama pull name, or hub id (org/name)."
    )
    served_name: str | None = Field(
        None, description="Name clients put in `model`; defaults to the profile name."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] | None = Field(
        None, description="Weight/activation dtype; unset keeps the engine's default."
    )
    trust_remote_code: bool = Field(False, description="Allow the model's own Python code.")
    quantization: str | None = Field(
        None, description="Quantization method (awq, gptq, fp8, bnb-4bit, ...), engine-specific."
    )
    tokenizer: str | None = Field(None, description="Tokenizer path or id, if not the model's.")
    chat_template: str | None = Field(None, description="Path to a Jinja chat template file.")
    reasoning_parser: str | None = Field(
        None, description="Reasoning parser (e.g. qwen3, deepseek_r1) where the engine has one."
    )
    tool_call_parser: str | None = Field(
        None, description="Tool-call parser (e.g. hermes) where the engine has one."
    )
    task: Literal["chat", "embedding", "rerank"] = Field(
        "chat", description="What the endpoint serves; decides the smoke and bench requests."
    )


class ServerSpec(Section):
    host: str = Field("127.0.0.1", description="Bind address. Loopback unless you say otherwise.")
    port: int | Literal["auto"] | None = Field(
        None, description="Port; unset uses the engine's default, `auto` picks a free one."
    )
    managed: bool = Field(
        True, description="false: someone else runs the server (e.g. Ollama as a service)."
    )
    api_key_env: str | None = Field(
        None,
        pattern=ENV_NAME,
        description="Name of the environment variable holding the API key (never the key).",
    )

    @field_validator("port")
    @classmethod
    def _port_range(cls, v):
        if isinstance(v, int) and not 1 <= v <= 65535:
            raise ValueError("must be between 1 and 65535, or 'auto'")
        return v


class ResourceSpec(Section):
    device: Literal["auto", "cuda", "cpu"] | None = Field(
        None,
        description="Where the engine runs; unset keeps the engine's default. auto: the GPU "
        "when there is one and the memory plan fits its free memory, else the CPU (engines "
        "that run on CPU; decided when the engine starts, said in one warning line).",
    )
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None,
        description="Fraction of GPU memory the engine may use (translated per engine: "
        "docs/backends.md).",
    )
    max_model_len: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Context length in tokens (prompt + output)."
    )
    max_num_seqs: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Most sequences batched at once."
    )
    max_num_batched_tokens: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Most tokens in one scheduler step."
    )
    tensor_parallel: Annotated[int, Field(ge=1)] = Field(1, description="GPUs per replica (TP).")
    pipeline_parallel: Annotated[int, Field(ge=1)] = Field(1, description="Pipeline stages.")
    kv_cache_dtype: str | None = Field(None, description="KV cache dtype (auto, fp8, int8, ...).")
    visible_devices: str | list[int] | None = Field(
        None, description="GPUs the engine sees (sets CUDA_VISIBLE_DEVICES), e.g. '0,1'."
    )


class HubSpec(Section):
    source: Literal["huggingface", "modelscope"] = Field(
        "huggingface", description="Which hub a hub id refers to."
    )
    endpoint: str | None = Field(None, description="Hub mirror URL (sets HF_ENDPOINT).")
    token_env: str | None = Field(
        None, pattern=ENV_NAME, description="Environment variable holding the hub token."
    )
    cache_dir: str | None = Field(None, description="Where hub downloads are cached (HF_HOME).")


class RuntimeSpec(Section):
    executable: str | None = Field(
        None, description="The engine's executable: a path, or a name looked up in the env."
    )
    venv: str | None = Field(
        None,
        description="Virtual environment that holds the engine, or engine:NAME[@VERSION] "
        "for one made by `llmctl engine install`.",
    )
    conda_env: str | None = Field(None, description="Conda environment (name or prefix path).")
    engine_version: str | None = Field(
        None, description="Engine version to render for when it cannot be read from the env."
    )


class HealthSpec(Section):
    start_timeout: Annotated[float, Field(gt=0)] | None = Field(
        None,
        description="Seconds from spawn until the port accepts (covers download + load "
        "for engines that bind late). Unset: the backend's default.",
    )
    load_timeout: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Seconds from port open until the model is listed under its name."
    )
    completion_timeout: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Seconds for the first real completion (warm-up)."
    )
    extend_on_progress: bool = Field(
        True, description="Extend a deadline while the engine's log keeps moving."
    )
    require_completion: bool = Field(
        True, description="Ready means one real completion answered (what CI wants)."
    )


class SmokeExpect(Section):
    regex: str | None = Field(None, description="The answer must match this regex.")
    json_: bool = Field(False, alias="json", description="The answer must parse as JSON.")
    embedding_dim: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Embedding models: the vector length."
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v):
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regex: {e}") from None
        return v


class SmokeSpec(Section):
    prompt: str = Field("Say hello in one short sentence.", description="User message sent.")
    system_prompt: str | None = Field(None, description="Optional system message.")
    max_tokens: Annotated[int, Field(gt=0)] = Field(32, description="Tokens to generate.")
    temperature: Annotated[float, Field(ge=0)] = Field(
        0.0, description="0 means greedy (then no top_p/top_k are sent)."
    )
    timeout: Annotated[float, Field(gt=0)] = Field(120.0, description="Seconds per request.")
    expect: SmokeExpect = Field(default_factory=SmokeExpect, description="Checks on the answer.")
    routes: list[Literal["chat", "completions"]] | None = Field(
        None,
        description="Routes checked: chat, and the legacy /v1/completions (default: both "
        "where the backend serves completions, else chat).",
    )


class RestartSpec(Section):
    policy: Literal["no", "on-failure"] = Field("no", description="Restart a crashed engine?")
    max_restarts: Annotated[int, Field(ge=0)] = Field(3, description="Give up after this many.")
    backoff_initial: Annotated[float, Field(gt=0)] = Field(1.0, description="First delay (s).")
    backoff_max: Annotated[float, Field(gt=0)] = Field(30.0, description="Delay cap (s).")

    @field_validator("policy", mode="before")
    @classmethod
    def _yaml_no(cls, v):
        return "no" if v is False else v  # YAML 1.1 reads a bare `no` as false


class Profile(Section):
    name: str = Field(pattern=NAME, description="Short name: state, logs and `llmctl stop NAME`.")
    backend: str = Field(description="Engine plugin: see `llmctl backends`.")
    model: ModelSpec
    server: ServerSpec = Field(default_factory=ServerSpec)
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    offline: bool = Field(
        False, description="Never touch the network: sets every offline variable."
    )
    hub: HubSpec = Field(default_factory=HubSpec)
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for the engine."
    )
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    options: dict[str, Any] = Field(
        default_factory=dict, description="Engine-specific keys, typed per backend."
    )
    extra_args: list[str] = Field(
        default_factory=list, description="Raw flags appended to the server command."
    )
    health: HealthSpec = Field(default_factory=HealthSpec)
    smoke: SmokeSpec = Field(default_factory=SmokeSpec)
    restart: RestartSpec = Field(default_factory=RestartSpec)

    _source: SourceMap | None = PrivateAttr(default=None)
    _path: Path | None = PrivateAttr(default=None)
    # resources.device: auto as decided when the engine is about to run (device.py)
    _device_decision: Any = PrivateAttr(default=None)

    @field_validator(
        "server",
        "resources",
        "hub",
        "runtime",
        "health",
        "smoke",
        "restart",
        "env",
        "options",
        "extra_args",
        mode="before",
    )
    @classmethod
    def _null_is_empty(cls, v, info):
        # `resources:` with every key commented out is YAML null: treat it as empty.
        if v is None:
            return [] if info.field_name == "extra_args" else {}
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict) -> dict:
        bad = [k for k in v if not re.match(ENV_NAME, k)]
        if bad:
            raise ValueError(f"not a valid environment variable name: {bad[0]!r}")
        return {k: "" if val is None else str(val) for k, val in v.items()}

    @field_validator("extra_args", mode="before")
    @classmethod
    def _args_as_strings(cls, v):
        if isinstance(v, list):
            return [a if isinstance(a, str) else str(a) for a in v]
        return v

    # -- derived, used by every backend ---------------------------------------------------
    @property
    def served_name(self) -> str:
        return self.model.served_name or self.name

    @property
    def device_decision(self):
        """The decision `resources.device: auto` got (llmdeploy_cli/device.py), if made."""
        return self._device_decision

    @property
    def source(self) -> SourceMap | None:
        return self._source

    @property
    def path(self) -> Path | None:
        return self._path

    def model_path(self) -> Path | None:
        """The model as a local path (relative to the profile's folder), or None for a hub id."""
        raw = os.path.expanduser(self.model.source)
        p = Path(raw)
        if (
            not p.is_absolute()
            and self._path is not None
            and (raw.startswith((".", "/")) or (self._path.parent / p).exists())
        ):
            p = (self._path.parent / p).resolve()
        if p.is_absolute() or raw.startswith("."):
            return p
        if p.exists():
            return p.resolve()
        return None

    def set_keys(self) -> set[str]:
        """Dotted paths of every key the file set explicitly (defaults excluded)."""
        out: set[str] = set()

        def walk(m: BaseModel, prefix: str) -> None:
            for name in m.model_fields_set:
                value = getattr(m, name)
                key = f"{prefix}{name}"
                out.add(key)
                if isinstance(value, BaseModel):
                    walk(value, key + ".")

        walk(self, "")
        return out

    def issue(self, loc: tuple, message: str, hint: str | None = None) -> ProfileIssue:
        if self._source is not None:
            return self._source.issue(loc, message, hint)
        return ProfileIssue(message, loc=tuple(loc), hint=hint)


# -- loading ------------------------------------------------------------------------------


def load_profile(path: str | Path, env: Mapping[str, str] | None = None) -> Profile:
    """Read and validate one profile file; every problem in it raises at once (ProfileError)."""
    data, smap = load_yaml(path, env)
    return profile_from_data(data, smap, Path(path))


def profile_from_data(data: object, smap: SourceMap, path: Path | None = None) -> Profile:
    if not isinstance(data, dict):
        raise ProfileError(
            [smap.issue((), "a profile is a mapping of keys (name, backend, model, ...)")]
        )
    try:
        profile = Profile.model_validate(data)
    except ValidationError as e:
        raise ProfileError(
            _merge_union_issues([_issue_from_pydantic(err, smap) for err in e.errors()])
        ) from None
    profile._source = smap
    profile._path = path.resolve() if path else None
    return profile


def _issue_from_pydantic(err: dict, smap: SourceMap) -> ProfileIssue:
    loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        choices = _fields_at(Profile, loc[:-1])
        close = difflib.get_close_matches(str(key), choices, n=1, cutoff=0.6)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else (f"known keys here: {', '.join(sorted(choices))}" if choices else None)
        )
        return smap.issue(loc, "unknown key", hint)
    if kind == "missing":
        return smap.issue(loc, "required key is missing")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = err.get("input")
    if not isinstance(given, (dict, list)) and kind not in ("missing",):
        msg = f"{msg} (got {given!r})"
    return smap.issue(loc, msg)


def _merge_union_issues(issues: list[ProfileIssue]) -> list[ProfileIssue]:
    """A value that fits no member of a union (port: int | 'auto') gives one issue per
    member; report it once, with every accepted form."""
    merged: dict[tuple, ProfileIssue] = {}
    for issue in issues:
        prev = merged.get(issue.loc)
        if prev is None:
            merged[issue.loc] = issue
            continue
        a = prev.message.rsplit(" (got ", 1)
        b = issue.message.rsplit(" (got ", 1)
        got = f" (got {a[1]}" if len(a) == 2 else ""
        prev.message = f"{a[0]}, or {b[0][0].lower()}{b[0][1:]}{got}"
    return list(merged.values())


def _is_union_tag(part) -> bool:
    # pydantic puts union member names in loc: ('resources', 'port', 'int') -> drop 'int'
    return isinstance(part, str) and (
        part in {"int", "str", "float", "bool", "none"}
        or part.startswith(("literal[", "constrained-", "list[", "function-"))
    )


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return [f.alias or n for n, f in model.model_fields.items()]
