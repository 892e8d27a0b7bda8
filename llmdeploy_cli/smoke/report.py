"""The smoke report: checks, exchanges, the verdict, and the errors that carry it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmdeploy_cli.errors import AssertionFailed, LlmctlError

REPORT_VERSION = 1
ANSWER_EXCERPT = 200  # characters of the answer kept in the report


@dataclass
class Check:
    """One line of the smoke: name, pass/fail/warn/skip, and what was seen."""

    name: str
    status: str  # pass | fail | warn | skip
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Exchange:
    """What one request returned (non-streaming, streaming, embedding or rerank)."""

    mode: str  # chat | stream | embedding | rerank
    text: str = ""
    text_fields: list[str] = field(default_factory=list)  # which fields carried text
    finish_reason: str | None = None
    usage: dict | None = None
    e2e_s: float | None = None
    ttft_s: float | None = None  # first chunk carrying text (streaming)
    first_chunk_s: float | None = None  # first data chunk, often role-only (streaming)
    chunks: int = 0
    text_chunks: int = 0
    done_seen: bool = False
    order_problems: list[str] = field(default_factory=list)
    dim: int | None = None  # embedding length
    items: int | None = None  # embeddings / rerank results returned

    @property
    def text_field(self) -> str | None:
        return self.text_fields[0] if self.text_fields else None

    def completion_tokens(self) -> int | None:
        if self.usage and isinstance(self.usage.get("completion_tokens"), int):
            return self.usage["completion_tokens"]
        return None

    def prompt_tokens(self) -> int | None:
        if self.usage and isinstance(self.usage.get("prompt_tokens"), int):
            return self.usage["prompt_tokens"]
        return None

    def as_dict(self) -> dict:
        d: dict[str, Any] = {"mode": self.mode}
        if self.mode in ("chat", "stream"):
            d.update(
                text_field=self.text_field,
                text_fields=list(self.text_fields),
                answer=self.text[:ANSWER_EXCERPT],
                answer_chars=len(self.text),
                finish_reason=self.finish_reason,
            )
        d["usage"] = self.usage
        d["e2e_ms"] = _ms(self.e2e_s)
        if self.mode == "stream":
            d.update(
                ttft_ms=_ms(self.ttft_s),
                first_chunk_ms=_ms(self.first_chunk_s),
                chunks=self.chunks,
                text_chunks=self.text_chunks,
                done_seen=self.done_seen,
            )
        if self.dim is not None:
            d["dim"] = self.dim
        if self.items is not None:
            d["items"] = self.items
        return d


@dataclass
class SmokeReport:
    """The outcome of one smoke run. JSON-safe through as_dict(); never holds a secret."""

    base_url: str
    model: str
    task: str
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    listed_models: list[str] | None = None

    # -- derived ------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def exchange(self, mode: str) -> Exchange | None:
        return next((x for x in self.exchanges if x.mode == mode), None)

    @property
    def latency_s(self) -> float | None:
        """End-to-end time of the non-streaming request (or the embedding/rerank one)."""
        x = self.exchange("chat") or self.exchange("embedding") or self.exchange("rerank")
        return x.e2e_s if x else None

    @property
    def ttft_s(self) -> float | None:
        x = self.exchange("stream")
        return x.ttft_s if x else None

    @property
    def text_field(self) -> str | None:
        x = self.exchange("chat") or self.exchange("stream")
        return x.text_field if x else None

    @property
    def completion_tokens(self) -> int | None:
        x = self.exchange("chat")
        return x.completion_tokens() if x else None

    @property
    def prompt_tokens(self) -> int | None:
        x = self.exchange("chat") or self.exchange("embedding") or self.exchange("rerank")
        return x.prompt_tokens() if x else None

    def as_dict(self) -> dict:
        return {
            "report_version": REPORT_VERSION,
            "ok": self.ok,
            "base_url": self.base_url,
            "model": self.model,
            "task": self.task,
            "latency_ms": _ms(self.latency_s),
            "ttft_ms": _ms(self.ttft_s),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "text_field": self.text_field,
            "listed_models": self.listed_models,
            "checks": [c.as_dict() for c in self.checks],
            "warnings": list(self.warnings),
            "requests": [x.as_dict() for x in self.exchanges],
        }

    def summary(self) -> str:
        """One line: verdict, model, the figures that matter."""
        head = "smoke ok" if self.ok else "smoke FAILED"
        bits = [f"{head}: {self.model} at {self.base_url}"]
        figures = []
        if self.latency_s is not None:
            figures.append(f"latency {_ms(self.latency_s):.0f} ms")
        if self.ttft_s is not None:
            figures.append(f"TTFT {_ms(self.ttft_s):.0f} ms")
        if self.completion_tokens is not None:
            figures.append(f"{self.completion_tokens} tokens")
        emb = self.exchange("embedding")
        if emb is not None and emb.dim is not None:
            figures.append(f"dim {emb.dim}")
        if self.text_field:
            figures.append(f"text in {self.text_field}")
        if figures:
            bits.append(", ".join(figures))
        if not self.ok:
            bits.append("failed: " + "; ".join(f"{c.name} ({c.detail})" for c in self.failures))
        elif self.warnings:
            bits.append(f"{len(self.warnings)} warning(s)")
        return " — ".join(bits)


class SmokeFailed(AssertionFailed):
    """The endpoint answered, but a check failed (exit 6). Carries the full report."""

    def __init__(self, report: SmokeReport):
        fails = report.failures
        first = fails[0]
        more = f" (and {len(fails) - 1} more)" if len(fails) > 1 else ""
        super().__init__(
            f"smoke failed: {first.name}: {first.detail}{more}",
            hint=_failure_hint(first),
        )
        self.report = report

    def envelope(self) -> dict:
        env = super().envelope()
        env["report"] = self.report.as_dict()
        return env


class AuthError(LlmctlError):
    kind = "auth"


def _failure_hint(c: Check) -> str | None:
    if c.name.endswith(": answer"):
        return "the model returned nothing: check the chat template and max_tokens"
    if c.name.startswith("expect:"):
        return "the answer did not meet the profile's smoke.expect"
    if c.name.endswith("order"):
        return "the server's stream is not OpenAI-compatible"
    return None


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000.0, 1)
