"""What the gateway asks of a backend, in one place: the routes it serves, whether it
manages its own models, whether it takes an API key. Reads the backend's declared
capabilities where it has them."""

from __future__ import annotations

ROUTES = {
    "chat": ("/v1/chat/completions", "/v1/completions"),
    "completions": ("/v1/completions",),
    "embedding": ("/v1/embeddings",),
    "embeddings": ("/v1/embeddings",),
    "rerank": ("/v1/rerank", "/rerank", "/v1/score"),
}


def _caps(backend):
    return getattr(backend, "capabilities", None)


def manages_own_models(backend) -> bool:
    """An engine that loads and unloads models itself (Ollama, Xinference)."""
    caps = _caps(backend)
    value = getattr(caps, "manages_models", None) if caps is not None else None
    if value is None:
        value = getattr(backend, "manages_models", False)
    return bool(value)


def takes_api_key(backend) -> bool:
    return "server.api_key_env" in getattr(backend, "supports", frozenset())


def routes(backend, task: str) -> tuple[str, ...]:
    """Paths the gateway proxies to this model."""
    caps = _caps(backend)
    tasks = getattr(caps, "tasks", None) if caps is not None else None
    if not tasks:
        tasks = (task,)
    out: list[str] = []
    for t in tasks:
        for r in ROUTES.get(str(t), ()):
            if r not in out:
                out.append(r)
    return tuple(out)
