"""The smoke test: one served endpoint, checked the way a client will use it (DESIGN.md §4, §9).

`run_smoke(endpoint, spec)` talks OpenAI-compatible HTTP with httpx directly (explicit
timeouts, no retries: the OpenAI SDK retries twice by default, which hides failures) and
returns a `SmokeReport`. It never prints.

What it checks, for a chat endpoint:
1. the model answers under its exact name: GET /v1/models lists it (when the backend lists
   models), and a completion for that name is not refused as "model not found";
2. one non-streaming chat completion returns text, a finish_reason and usage;
3. one streaming chat completion (with `stream_options.include_usage`) returns text, a
   finish_reason and a final usage chunk, in a sane order: role/text chunks, then the
   finish chunk, then `[DONE]`;
4. the profile's expectations (`smoke.expect`): a regex over the answer, JSON that parses.

"Text" is content, or reasoning (`reasoning_content` / `reasoning`, what reasoning models
fill when a short answer ends inside the think block), or tool calls; the report says which
field carried it. Usage missing, `[DONE]` missing (transformers serve never sends it) and a
whitespace-only answer are warnings, not failures.

For an embedding endpoint (task `embedding`) it POSTs /v1/embeddings and checks the vector
(and `expect.embedding_dim`); for `rerank` it POSTs /v1/rerank and checks the results.

Generation parameters are sent only where they apply: `max_tokens` and `temperature` from
the spec; temperature 0 is greedy on every engine, so no top_p/top_k are ever sent.

Errors (exit codes as DESIGN.md §9): connection refused or a timeout -> UnreachableError
(5); 401/403 -> AuthError (1) naming the key's environment variable; the model not served
under that name -> AssertionFailed (6) naming the names the server does serve; any other
4xx/5xx -> LlmctlError (1) with the server's own error text; an empty answer, a missing
finish_reason, a broken stream or a failed expectation -> SmokeFailed, an AssertionFailed
(6) that carries the report.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmdeploy_cli.errors import AssertionFailed, LlmctlError, UnreachableError

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from llmdeploy_cli.backend import Endpoint
    from llmdeploy_cli.profile import SmokeSpec

REPORT_VERSION = 1
TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls")
EMBED_TASKS = ("embedding", "embed", "embeddings")
ANSWER_EXCERPT = 200  # characters of the answer kept in the report


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
def run_smoke(
    endpoint: Endpoint,
    spec: SmokeSpec,
    *,
    api_key: str | None = None,
    timeout: float | None = None,
    check_listed: bool | None = None,
    raise_on_failure: bool = True,
) -> SmokeReport:
    """Smoke one endpoint; return the report or raise (see the module docstring).

    `api_key` overrides the key read from `endpoint.api_key_env`. `timeout` (seconds per
    request) overrides `spec.timeout`. `check_listed`: True requires the model in
    GET /v1/models; False skips the listing (transformers serve never lists a local
    directory: pass `backend.lists_models`); None tries the listing and only warns when it
    is unavailable or does not name the model (the completion then decides).
    With `raise_on_failure=False` a failed check is returned in the report instead of
    raising SmokeFailed (transport, auth and HTTP errors still raise).
    """
    import httpx

    per_request = float(timeout if timeout is not None else spec.timeout)
    key = api_key if api_key is not None else endpoint.api_key()
    headers = {"Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    report = SmokeReport(
        base_url=endpoint.base_url.rstrip("/"), model=endpoint.model, task=endpoint.task
    )
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    t = httpx.Timeout(per_request, connect=min(per_request, 10.0))
    ctx = _Ctx(endpoint, report, per_request)
    with httpx.Client(
        headers=headers, timeout=t, limits=limits, trust_env=_use_proxy_env(endpoint.base_url)
    ) as client:
        ctx.client = client
        _check_listed(ctx, check_listed)
        if endpoint.task in EMBED_TASKS:
            _embedding(ctx, spec)
        elif endpoint.task == "rerank":
            _rerank(ctx, spec)
        else:
            _chat(ctx, spec)
            _stream(ctx, spec)
            _expectations(ctx, spec)
    if raise_on_failure and not report.ok:
        raise SmokeFailed(report)
    return report


@dataclass
class _Ctx:
    endpoint: Endpoint
    report: SmokeReport
    timeout: float
    client: httpx.Client | None = None

    def url(self, path: str) -> str:
        return f"{self.report.base_url}{path}"

    def check(self, name: str, status: str, detail: str = "") -> None:
        self.report.checks.append(Check(name, status, detail))

    def warn(self, text: str) -> None:
        self.report.warnings.append(text)


def _messages(spec: SmokeSpec) -> list[dict]:
    msgs = []
    if spec.system_prompt:
        msgs.append({"role": "system", "content": spec.system_prompt})
    msgs.append({"role": "user", "content": spec.prompt})
    return msgs


def chat_body(model: str, spec: SmokeSpec, *, stream: bool = False) -> dict:
    """The request body: only parameters that apply (temperature 0 = greedy, no top_p/k)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(spec),
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


# -- model listing ------------------------------------------------------------------------
def _list_models(ctx: _Ctx) -> tuple[list[str] | None, str]:
    """(ids, why-not). Transport errors propagate as UnreachableError."""
    url = ctx.url("/models")
    # A fresh connection: servers that fail the listing with an unhandled exception
    # (transformers serve without an HF cache: 500) reset the kept-alive connection.
    r = _send(ctx, "GET", url, headers={"Connection": "close"})
    if r.status_code in (401, 403):
        _raise_auth(ctx, r, url)
    if r.status_code != 200:
        return None, f"GET /v1/models answered {r.status_code}: {_server_error(r)}"
    try:
        data = r.json().get("data")
        ids = [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError, TypeError):
        return None, "GET /v1/models did not return a model list"
    return ids, ""


def _check_listed(ctx: _Ctx, mode: bool | None) -> None:
    name = "model listed"
    if mode is False:
        ctx.check(name, "skip", "this backend does not list its model in /v1/models")
        return
    ids, why = _list_models(ctx)
    model = ctx.endpoint.model
    if ids is None:
        if mode:
            ctx.check(name, "fail", why)
            _finish_early(ctx)
        ctx.check(name, "skip", why)
        ctx.warn(f"could not list models ({why}); the completion decides")
        return
    ctx.report.listed_models = ids
    if model in ids:
        ctx.check(name, "pass", f"'{model}' in /v1/models")
        return
    if mode:
        raise _model_missing(ctx, ids, None)
    ctx.check(name, "warn", f"'{model}' not in /v1/models (have: {_names(ids)})")
    ctx.warn(f"'{model}' is not listed in /v1/models; the completion decides")


def _finish_early(ctx: _Ctx) -> None:
    raise SmokeFailed(ctx.report)


def _model_missing(ctx: _Ctx, ids: list[str] | None, server_text: str | None) -> AssertionFailed:
    model = ctx.endpoint.model
    msg = f"model '{model}' is not served at {ctx.report.base_url}"
    if server_text:
        msg += f" (server: {server_text})"
    if ids:
        hint = f"it serves: {_names(ids)}; use one of these (--model, or the profile's served_name)"
    elif ids == []:
        hint = "the server lists no models yet; is it still loading?"
    else:
        hint = "check the model name: it must match the served name exactly"
    return AssertionFailed(msg, hint=hint)


def _looks_like_model_error(status: int, text: str, model: str) -> bool:
    """404, or a 400/422 that names the model as unknown (transformers serve: "pinned")."""
    if status == 404:
        return True
    if status not in (400, 422):
        return False
    low = text.lower()
    words = ("not found", "does not exist", "pinned", "unknown model", "not served", "no model")
    return any(w in low for w in words) and ("model" in low or model.lower() in low)


# -- chat -----------------------------------------------------------------------------------
def _post_checked(ctx: _Ctx, url: str, body: dict) -> httpx.Response:
    r = _send(ctx, "POST", url, json=body)
    _raise_for_status(ctx, r, url)
    return r


def _raise_for_status(ctx: _Ctx, r: httpx.Response, url: str) -> None:
    if r.status_code < 400:
        return
    if r.status_code in (401, 403):
        _raise_auth(ctx, r, url)
    text = _server_error(r)
    if _looks_like_model_error(r.status_code, text, ctx.endpoint.model):
        ids = None
        if ctx.report.listed_models is not None:
            ids = ctx.report.listed_models
        else:
            try:
                ids, _ = _list_models(ctx)
            except LlmctlError:
                ids = None
        raise _model_missing(ctx, ids, text)
    raise LlmctlError(
        f"{url} answered HTTP {r.status_code}: {text}",
        hint="see the server's log (llmctl logs NAME)" if r.status_code >= 500 else None,
    )


def _chat(ctx: _Ctx, spec: SmokeSpec) -> None:
    url = ctx.url("/chat/completions")
    body = chat_body(ctx.endpoint.model, spec)
    t0 = time.monotonic()
    r = _post_checked(ctx, url, body)
    x = Exchange("chat", e2e_s=time.monotonic() - t0)
    ctx.report.exchanges.append(x)
    try:
        doc = r.json()
        choice = doc["choices"][0]
        msg = choice.get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        ctx.check("chat: answer", "fail", f"not a chat completion: {r.text[:200]!r}")
        return
    x.text, x.text_fields = _text_of(msg)
    x.finish_reason = choice.get("finish_reason")
    x.usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    _answer_checks(ctx, spec, x, "chat")


def _answer_checks(ctx: _Ctx, spec: SmokeSpec, x: Exchange, label: str) -> None:
    if x.text:
        ctx.check(f"{label}: answer", "pass", f"{len(x.text)} chars in {'+'.join(x.text_fields)}")
        if not x.text.strip():
            ctx.warn(f"{label}: the answer is whitespace only")
    else:
        ctx.check(
            f"{label}: answer",
            "fail",
            "empty: no content, reasoning or tool calls",
        )
    if x.finish_reason:
        ctx.check(f"{label}: finish_reason", "pass", str(x.finish_reason))
    else:
        ctx.check(f"{label}: finish_reason", "fail", "missing")
    tokens = x.completion_tokens()
    if x.usage is None:
        ctx.check(f"{label}: usage", "warn", "the server sent no usage")
        ctx.warn(f"{label}: the server sent no usage; token counts are unknown")
    elif tokens is None:
        ctx.check(f"{label}: usage", "warn", f"usage without completion_tokens: {x.usage}")
        ctx.warn(f"{label}: usage has no completion_tokens")
    else:
        ctx.check(f"{label}: usage", "pass", f"{x.prompt_tokens()} prompt + {tokens} completion")
        if tokens > spec.max_tokens:
            ctx.warn(f"{label}: {tokens} tokens generated, max_tokens was {spec.max_tokens}")


# -- streaming --------------------------------------------------------------------------------
def _stream(ctx: _Ctx, spec: SmokeSpec, body: dict | None = None) -> None:
    import httpx

    url = ctx.url("/chat/completions")
    if body is None:
        body = chat_body(ctx.endpoint.model, spec, stream=True)
    x = Exchange("stream")
    ctx.report.exchanges.append(x)
    t0 = time.monotonic()
    parts: dict[str, list[str]] = {f: [] for f in TEXT_FIELDS}
    finish_seen = False
    role_after_text = False
    try:
        with ctx.client.stream("POST", url, json=body) as r:
            if r.status_code >= 400:
                r.read()
                text = _server_error(r)
                if (
                    r.status_code in (400, 422)
                    and "stream_options" in body
                    and ("stream_options" in text)
                ):
                    # An older server refusing stream_options: say so, send once without it.
                    ctx.warn("the server refused stream_options; streamed without it")
                    ctx.report.exchanges.remove(x)
                    retry = {k: v for k, v in body.items() if k != "stream_options"}
                    return _stream(ctx, spec, retry)
                _raise_for_status(ctx, r, url)
            for payload in _sse_data(r):
                now = time.monotonic() - t0
                if x.done_seen:
                    x.order_problems.append("data after [DONE]")
                    continue
                if payload == "[DONE]":
                    x.done_seen = True
                    continue
                try:
                    chunk = json.loads(payload)
                except ValueError:
                    x.order_problems.append(f"a chunk is not JSON: {payload[:80]!r}")
                    continue
                if not isinstance(chunk, dict):
                    x.order_problems.append(f"a chunk is not an object: {payload[:80]!r}")
                    continue
                if chunk.get("error"):
                    raise LlmctlError(
                        f"the stream carried an error: {_error_text(chunk)}",
                        hint="see the server's log (llmctl logs NAME)",
                    )
                x.chunks += 1
                if x.first_chunk_s is None:
                    x.first_chunk_s = now
                if isinstance(chunk.get("usage"), dict):
                    x.usage = chunk["usage"]
                choices = chunk.get("choices") or []
                if not choices:
                    continue
                choice = choices[0] if isinstance(choices[0], dict) else {}
                delta = choice.get("delta") or {}
                got_text = False
                for f in TEXT_FIELDS:
                    piece = _field_text(delta, f)
                    if piece:
                        parts[f].append(piece)
                        got_text = True
                if got_text:
                    x.text_chunks += 1
                    if x.ttft_s is None:
                        x.ttft_s = now
                    if finish_seen:
                        x.order_problems.append("text after the finish_reason chunk")
                if delta.get("role") and x.text_chunks and not got_text:
                    role_after_text = True
                if choice.get("finish_reason"):
                    if finish_seen and got_text:
                        x.order_problems.append("finish_reason sent twice")
                    elif finish_seen:
                        # Xinference 4.x closes with a second, empty chunk ("length" then
                        # "stop"): harmless to a client; keep the first reason.
                        second = choice["finish_reason"]
                        ctx.warn(
                            f"stream: a second finish_reason ({second!r}) came in an empty "
                            "chunk; kept the first"
                        )
                    else:
                        x.finish_reason = choice["finish_reason"]
                    finish_seen = True
    except httpx.TransportError as e:
        raise _transport_error(ctx, e, url) from None
    x.e2e_s = time.monotonic() - t0
    if x.chunks == 0:
        x.order_problems.append("no `data:` chunks came back: the server did not stream")
    _stream_finish(ctx, spec, x, parts, role_after_text)


def _stream_finish(
    ctx: _Ctx, spec: SmokeSpec, x: Exchange, parts: dict[str, list[str]], role_after_text: bool
) -> None:
    x.text_fields = [f for f in TEXT_FIELDS if parts[f]]
    x.text = "".join("".join(parts[f]) for f in x.text_fields[:1])
    _answer_checks(ctx, spec, x, "stream")
    if x.order_problems:
        ctx.check("stream: order", "fail", "; ".join(dict.fromkeys(x.order_problems)))
    else:
        detail = "role/text chunks, then finish"
        if x.done_seen:
            detail += ", then [DONE]"
        ctx.check("stream: order", "pass", detail)
    if role_after_text:
        ctx.warn("stream: a role chunk came after text")
    if not x.done_seen:
        ctx.warn("stream: no [DONE] at the end (transformers serve never sends one)")


def _sse_data(r: httpx.Response):
    """The `data:` payloads of an SSE stream, one per event (multi-line data joined)."""
    buf: list[str] = []
    for line in r.iter_lines():
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith("data:"):
            buf.append(line[5:].lstrip(" "))
        # comments (":") and other fields (event:, id:) are ignored
    if buf:
        yield "\n".join(buf)


# -- expectations -------------------------------------------------------------------------------
def _expectations(ctx: _Ctx, spec: SmokeSpec) -> None:
    exp = spec.expect
    x = ctx.report.exchange("chat")
    if x is None or (exp.regex is None and not exp.json_):
        return
    text = x.text
    if exp.regex is not None:
        if re.search(exp.regex, text):
            ctx.check("expect: regex", "pass", f"/{exp.regex}/ matched")
        else:
            ctx.check("expect: regex", "fail", f"/{exp.regex}/ not found in {text[:80]!r}")
    if exp.json_:
        candidate = _strip_fence(text)
        try:
            json.loads(candidate)
        except ValueError as e:
            ctx.check("expect: json", "fail", f"the answer is not JSON ({e}): {text[:80]!r}")
        else:
            ctx.check("expect: json", "pass", "the answer parses as JSON")
    if exp.embedding_dim is not None:
        ctx.warn("expect.embedding_dim applies to embedding endpoints only; ignored")


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a ``` fence; accept that."""
    m = re.fullmatch(r"\s*```(?:json)?\s*\n(.*?)\n?```\s*", text, re.S)
    return m.group(1) if m else text


# -- embeddings and rerank --------------------------------------------------------------------
def _embedding(ctx: _Ctx, spec: SmokeSpec) -> None:
    url = ctx.url("/embeddings")
    body = {"model": ctx.endpoint.model, "input": spec.prompt}
    t0 = time.monotonic()
    r = _post_checked(ctx, url, body)
    x = Exchange("embedding", e2e_s=time.monotonic() - t0)
    ctx.report.exchanges.append(x)
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
    t0 = time.monotonic()
    r = _post_checked(ctx, url, body)
    x = Exchange("rerank", e2e_s=time.monotonic() - t0)
    ctx.report.exchanges.append(x)
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


# -- HTTP helpers --------------------------------------------------------------------------------
def _send(ctx: _Ctx, method: str, url: str, **kw) -> httpx.Response:
    import httpx

    try:
        return ctx.client.request(method, url, **kw)
    except httpx.TransportError as e:
        raise _transport_error(ctx, e, url) from None


def _transport_error(ctx: _Ctx, e: Exception, url: str) -> UnreachableError:
    import httpx

    if isinstance(e, httpx.ConnectTimeout):
        return UnreachableError(
            f"cannot reach {url}: connect timed out",
            hint="check the host and port, and that no firewall drops the connection",
        )
    if isinstance(e, httpx.TimeoutException):
        return UnreachableError(
            f"{url} accepted the connection but did not answer in {ctx.timeout:g} s",
            hint="raise --timeout (or smoke.timeout in the profile); the model may still be "
            "warming up",
        )
    if isinstance(e, httpx.ConnectError):
        return UnreachableError(
            f"cannot connect to {url}: {_reason(e)}",
            hint="is the server running? start it with 'llmctl serve FILE', or check --url",
        )
    return UnreachableError(
        f"{url}: the connection failed: {_reason(e)}",
        hint="the server closed the connection; see its log (llmctl logs NAME)",
    )


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text


def _raise_auth(ctx: _Ctx, r: httpx.Response, url: str) -> None:
    env = ctx.endpoint.api_key_env
    where = f"set ${env}" if env else "pass --api-key-env NAME (the variable holding the key)"
    raise AuthError(
        f"API key missing or wrong: {url} answered HTTP {r.status_code} ({_server_error(r)})",
        hint=f"{where} to the key the server expects",
    )


def _server_error(r: httpx.Response) -> str:
    """The server's own error text, whatever shape it came in."""
    try:
        doc = r.json()
    except ValueError:
        text = r.text.strip()
        return text[:300] if text else (r.reason_phrase or f"HTTP {r.status_code}")
    return _error_text(doc)[:300]


def _error_text(doc: Any) -> str:
    if isinstance(doc, dict):
        for key in ("error", "detail", "message"):
            v = doc.get(key)
            if isinstance(v, dict):
                return str(v.get("message") or v.get("detail") or v)
            if isinstance(v, list) and v:
                first = v[0]
                return str(first.get("msg", first) if isinstance(first, dict) else first)
            if v:
                return str(v)
    return json.dumps(doc)[:300]


def _field_text(obj: dict, name: str) -> str:
    v = obj.get(name)
    if not v:
        return ""
    if name == "tool_calls":
        out = []
        for call in v if isinstance(v, list) else [v]:
            fn = (call or {}).get("function") or {}
            out.append(f"{fn.get('name') or ''}({fn.get('arguments') or ''})")
        return "".join(out) or json.dumps(v)
    return v if isinstance(v, str) else json.dumps(v)


def _text_of(msg: dict) -> tuple[str, list[str]]:
    """(text, fields that carried text): content first, then reasoning, then tool calls."""
    fields = [f for f in TEXT_FIELDS if _field_text(msg, f)]
    text = _field_text(msg, fields[0]) if fields else ""
    return text, fields


def _failure_hint(c: Check) -> str | None:
    if c.name.endswith(": answer"):
        return "the model returned nothing: check the chat template and max_tokens"
    if c.name.startswith("expect:"):
        return "the answer did not meet the profile's smoke.expect"
    if c.name.endswith("order"):
        return "the server's stream is not OpenAI-compatible"
    return None


def _names(ids: list[str], n: int = 8) -> str:
    shown = ", ".join(ids[:n])
    return shown + (f" (+{len(ids) - n} more)" if len(ids) > n else "")


def _use_proxy_env(url: str) -> bool:
    """Honour HTTP(S)_PROXY for remote URLs only: a proxy must never see loopback traffic."""
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return not (host in ("localhost", "::1") or host.startswith("127."))


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000.0, 1)


def first_listed_model(
    base_url: str,
    *,
    api_key: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
) -> str:
    """The first model GET {base_url}/models lists (for `smoke --url` without --model)."""
    import httpx

    from llmdeploy_cli.backend import Endpoint
    from llmdeploy_cli.errors import UsageError

    t = float(timeout) if timeout else 30.0
    endpoint = Endpoint(base_url=base_url.rstrip("/"), model="", api_key_env=api_key_env)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    report = SmokeReport(base_url=endpoint.base_url, model="", task="chat")
    ctx = _Ctx(endpoint, report, t)
    with httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(t, connect=min(t, 10.0)),
        trust_env=_use_proxy_env(endpoint.base_url),
    ) as client:
        ctx.client = client
        ids, why = _list_models(ctx)
    if ids is None:
        raise UsageError(
            f"cannot pick a model: {why}",
            hint="pass --model NAME (the exact name requests must carry)",
        )
    if not ids:
        raise UsageError(
            f"{endpoint.base_url}/models lists no model",
            hint="pass --model NAME, or wait until the server has loaded its model",
        )
    return ids[0]
