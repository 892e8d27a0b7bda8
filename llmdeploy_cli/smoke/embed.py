"""smoke's embedding and rerank checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdeploy_cli.smoke.transport import _Ctx, _timed_post

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.profile import SmokeSpec


def _embedding(ctx: _Ctx, spec: SmokeSpec) -> None:
    url = ctx.url("/embeddings")
    body = {"model": ctx.endpoint.model, "input": spec.prompt}
    r, x = _timed_post(ctx, "embedding", url, body)
    try:
        doc = r.json()
        vec = doc["data"][0]["embedding"]
        x.items = len(doc["data"])
    except (ValueError, KeyError, IndexError, TypeError):
        ctx.check("embedding: vector", "fail", f"not an embeddings answer: {r.text[:200]!r}")
        return
    x.usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    if not isinstance(vec, list) or not vec or not all(isinstance(v, (int, float)) for v in vec):
        ctx.check("embedding: vector", "fail", "no vector of numbers in data[0].embedding")
        return
    x.dim = len(vec)
    ctx.check("embedding: vector", "pass", f"{x.dim} floats")
    want = spec.expect.embedding_dim
    if want is not None:
        if x.dim == want:
            ctx.check("expect: embedding_dim", "pass", str(want))
        else:
            ctx.check("expect: embedding_dim", "fail", f"got {x.dim}, expected {want}")
    if x.usage is None:
        ctx.warn("embedding: the server sent no usage")


def _rerank(ctx: _Ctx, spec: SmokeSpec) -> None:
    url = ctx.url("/rerank")
    docs = [spec.prompt, "An unrelated sentence about the weather."]
    body = {"model": ctx.endpoint.model, "query": spec.prompt, "documents": docs}
    r, x = _timed_post(ctx, "rerank", url, body)
    try:
        doc = r.json()
        results = doc["results"]
    except (ValueError, KeyError, TypeError):
        ctx.check("rerank: results", "fail", f"not a rerank answer: {r.text[:200]!r}")
        return
    x.usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    x.items = len(results) if isinstance(results, list) else 0
    if x.items:
        ctx.check("rerank: results", "pass", f"{x.items} scored documents")
    else:
        ctx.check("rerank: results", "fail", "no results")
