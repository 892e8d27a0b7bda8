"""What models/, plan, doctor and preflight ask a backend: its declared capabilities
(llmdeploy_cli/capabilities.py), read in one place instead of lists of engine names.

A capability left UNDECLARED or NOT_SUPPORTED reads as "no": the engine loads no such
format, does not run on CPU, sets no hub variables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdeploy_cli.capabilities import HubVars, ModelFormat, supported

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Backend
    from llmdeploy_cli.profile import Profile


def backend_of(profile: Profile) -> Backend | None:
    """The profile's backend, or None when it is not registered (validate says why)."""
    from llmdeploy_cli.errors import LlmctlError
    from llmdeploy_cli.registry import get

    try:
        return get(profile.backend)
    except LlmctlError:
        return None


def model_formats(backend: Backend | None) -> frozenset[ModelFormat]:
    fmts = getattr(backend, "model_formats", None)
    return frozenset(fmts) if supported(fmts) and fmts else frozenset()


def needs_gguf(backend: Backend | None) -> bool:
    """The engine loads GGUF files and no Hugging Face folder (llama.cpp, Ollama)."""
    fmts = model_formats(backend)
    return ModelFormat.GGUF in fmts and ModelFormat.HF_FOLDER not in fmts


def takes_registry_names(backend: Backend | None) -> bool:
    """model.source is a name in the engine's own registry (a pull name), not a hub id."""
    return ModelFormat.REGISTRY_NAME in model_formats(backend)


def downloads_itself(backend: Backend | None) -> bool:
    """The engine fetches its models from its own registry only: `llmctl pull` cannot."""
    fmts = model_formats(backend)
    return ModelFormat.REGISTRY_NAME in fmts and ModelFormat.HF_FOLDER not in fmts


def runs_on_cpu(backend: Backend | None) -> bool:
    return getattr(backend, "runs_on_cpu", False) is True


def hub_vars(backend: Backend | None) -> HubVars | None:
    hub = getattr(backend, "hub", None)
    return hub if supported(hub) and isinstance(hub, HubVars) else None


def display_name(backend: Backend) -> str:
    """'Ollama' from the summary 'Ollama (ollama serve + ...)', else the backend's name."""
    summary = (getattr(backend, "summary", "") or "").split(" (")[0].strip()
    return summary if summary and len(summary.split()) <= 2 else backend.name


__all__ = [
    "backend_of",
    "display_name",
    "downloads_itself",
    "hub_vars",
    "model_formats",
    "needs_gguf",
    "runs_on_cpu",
    "takes_registry_names",
]
