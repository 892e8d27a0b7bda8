"""What the gateway asks of a backend, in one place, from the capabilities each backend
declares (llmdeploy_cli/capabilities.py): the routes a model serves, whether its engine
manages its own models, whether it takes an API key."""

from __future__ import annotations

from llmdeploy_cli.capabilities import ModelFormat, Task, routes, supported, task_of

# A profile's model.task -> the tasks a request for it may use
FAMILY = {
    Task.CHAT: {Task.CHAT, Task.COMPLETIONS},
    Task.EMBEDDINGS: {Task.EMBEDDINGS},
    Task.RERANK: {Task.RERANK},
}
RERANK_ALIASES = ("/rerank", "/v1/score")  # what rerank servers also answer (Infinity, vLLM)


def manages_own_models(backend) -> bool:
    """An engine with its own model registry (Ollama, Xinference) loads and unloads models
    itself: the gateway routes to it and never evicts it."""
    formats = getattr(backend, "model_formats", None)
    return bool(supported(formats) and ModelFormat.REGISTRY_NAME in formats)


def takes_api_key(backend) -> bool:
    return "server.api_key_env" in getattr(backend, "supports", frozenset())


def model_routes(backend, task: str) -> tuple[str, ...]:
    """Paths the gateway proxies to a model: its profile's task, as far as the backend
    declares it."""
    want = FAMILY.get(task_of(task), {task_of(task)})
    declared = getattr(backend, "tasks", None)
    tasks = want & set(declared) if supported(declared) else want
    out = routes(tasks or want)
    if Task.RERANK in tasks:
        out += RERANK_ALIASES
    return out
