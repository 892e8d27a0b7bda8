"""Xinference's typed options, its refusal hints and size spelling (facts: see __init__)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MODEL_TYPES = {"chat": "LLM", "embedding": "embedding", "rerank": "rerank"}
KwargValue = str | int | float | bool


class XinferenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str | None = Field(
        None,
        description="Built-in registry name (e.g. qwen2.5-instruct); default: model.source "
        "when that is not a local directory",
    )
    model_engine: str | None = Field(
        None,
        description="Engine inside Xinference (transformers, vllm, sglang, llama.cpp, ...); "
        "chat models default to transformers",
    )
    model_format: str | None = Field(None, description="pytorch, awq, gptq, ggufv2, mlx, ...")
    model_size_in_billions: int | float | str | None = Field(
        None, description="Size of the registry spec to launch, e.g. 1.5 (sent as 1_5)"
    )
    model_uid: str | None = Field(
        None, description="Uid clients put in `model`; default: model.served_name"
    )
    n_gpu: int | str | None = Field(
        None, description="GPUs for the model: auto (default), none (CPU) or a count"
    )
    gpu_idx: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="Which GPUs of the worker the model may use"
    )
    replica: Annotated[int, Field(ge=1)] | None = Field(None, description="Model replicas")
    enable_thinking: bool = Field(False, description="Thinking mode for hybrid reasoning LLMs")
    auth: bool | None = Field(
        None,
        description="Xinference's own auth (on by default in 4.x). Unset: on when "
        "server.api_key_env is set, else off (XINFERENCE_AUTH_ADVANCED=0)",
    )
    login_user_env: str | None = Field(
        None,
        description="Variable holding a Xinference user name: serve logs in as that user "
        "(POST /token) to launch the model, since API keys cannot launch",
    )
    login_password_env: str | None = Field(
        None, description="Variable holding that user's password (with login_user_env)"
    )
    home: str | None = Field(
        None,
        description="XINFERENCE_HOME (models, caches, auth database); default: a per-profile "
        "folder under llmctl's state dir, set by serve",
    )
    log_level: Literal[LOG_LEVELS] | None = Field(  # type: ignore[valid-type]
        None, description="Server log level (--log-level, default INFO)"
    )
    launch_kwargs: dict[str, KwargValue] = Field(
        default_factory=dict,
        description="Extra `--key value` pairs passed unchecked to the model at launch "
        "(engine kwargs such as gpu_memory_utilization for vllm)",
    )

    @field_validator("n_gpu")
    @classmethod
    def _n_gpu(cls, v):
        # One validator rather than a Union, so an error names options.n_gpu only once.
        if v is None or v in ("auto", "none"):
            return v
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v
        raise ValueError("must be auto, none (CPU) or a GPU count of 1 or more")

    @field_validator("model_size_in_billions")
    @classmethod
    def _size(cls, v):
        return None if v is None else size_arg(v)

    @field_validator("launch_kwargs")
    @classmethod
    def _kwarg_names(cls, v: dict) -> dict:
        for k in v:
            if not k or k.startswith("-") or any(c.isspace() for c in k):
                raise ValueError(f"not a keyword name: {k!r} (write it without leading --)")
        return v


def size_arg(v: int | float | str) -> str:
    """Xinference's spelling of a model size: 7 -> '7', 1.5 -> '1_5' (its registry form)."""
    if isinstance(v, bool):
        raise ValueError("must be a number of billions, e.g. 1.5")
    if isinstance(v, (int, float)):
        if v <= 0:
            raise ValueError("must be positive")
        return str(int(v)) if float(v).is_integer() else repr(float(v)).replace(".", "_")
    s = str(v).strip()
    try:
        return size_arg(float(s.replace("_", ".")))
    except ValueError:
        raise ValueError(f"not a model size in billions: {v!r}") from None


MISSING_NAME = (
    "options.model_name is not set: Xinference needs the registry name of the model family "
    "(e.g. qwen2.5-instruct) to serve a local directory, and the launch will not run without it"
)

REFUSED_HINTS = {
    "resources.gpu_memory_utilization": (
        "Xinference passes memory settings to the engine it runs: for the vllm engine use "
        "options.launch_kwargs: {gpu_memory_utilization: 0.9}"
    ),
    "resources.max_num_seqs": (
        "engine-specific in Xinference: options.launch_kwargs: {max_num_seqs: N} "
        "(transformers and vllm engines)"
    ),
    "model.dtype": "engine-specific in Xinference: pass the engine's kwarg in "
    "options.launch_kwargs",
    "model.reasoning_parser": "Xinference picks the parser from its registry; see "
    "options.enable_thinking",
    "model.tool_call_parser": "Xinference picks the tool parser from its model registry",
    "model.chat_template": "Xinference takes the chat template from its model registry",
    "model.revision": "Xinference pins revisions in its model registry",
}
