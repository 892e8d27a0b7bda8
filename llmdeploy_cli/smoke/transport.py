"""smoke's requests: the context a run carries, sending, and turning answers into errors.

Transport failures become one UnreachableError line (openai_http.failures); 401/403 an
AuthError naming the key's variable; "no such model" an AssertionFailed naming the models
the server does serve; any other 4xx/5xx an LlmctlError with the server's own text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import AssertionFailed, LlmctlError, UnreachableError
from llmdeploy_cli.openai_http.failures import classify, unreachable_error
from llmdeploy_cli.openai_http.wire import body_error_text, looks_like_model_error, model_ids
from llmdeploy_cli.smoke.report import AuthError, Check, Exchange, SmokeFailed, SmokeReport

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from llmdeploy_cli.backend import Endpoint


@dataclass
class _Ctx:
    endpoint: Endpoint
    report: SmokeReport
    timeout: float
    client: httpx.Client | None = None
    no_stream_options: bool = False  # the server refused stream_options once

    def url(self, path: str) -> str:
        return f"{self.report.base_url}{path}"

    def check(self, name: str, status: str, detail: str = "") -> None:
        self.report.checks.append(Check(name, status, detail))

    def warn(self, text: str) -> None:
        self.report.warnings.append(text)


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
        ids = model_ids(r.json())
    except ValueError:
        ids = None
    if ids is None:
        return None, "GET /v1/models did not return a model list"
    return ids, ""


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


def _post_checked(ctx: _Ctx, url: str, body: dict) -> httpx.Response:
    r = _send(ctx, "POST", url, json=body)
    _raise_for_status(ctx, r, url)
    return r


def _timed_post(ctx: _Ctx, kind: str, url: str, body: dict) -> tuple[httpx.Response, Exchange]:
    """POST `body`, checked as _post_checked does; the answer and its Exchange (`kind`, the
    seconds it took), already added to the report."""
    t0 = time.monotonic()
    r = _post_checked(ctx, url, body)
    x = Exchange(kind, e2e_s=time.monotonic() - t0)
    ctx.report.exchanges.append(x)
    return r, x


def _raise_for_status(ctx: _Ctx, r: httpx.Response, url: str) -> None:
    if r.status_code < 400:
        return
    if r.status_code in (401, 403):
        _raise_auth(ctx, r, url)
    text = _server_error(r)
    if looks_like_model_error(r.status_code, text, ctx.endpoint.model):
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


def _send(ctx: _Ctx, method: str, url: str, **kw) -> httpx.Response:
    import httpx

    try:
        return ctx.client.request(method, url, **kw)
    except httpx.TransportError as e:
        raise _transport_error(ctx, e, url) from None


def _transport_error(ctx: _Ctx, e: Exception, url: str) -> UnreachableError:
    return unreachable_error(classify(e), url, ctx.timeout)


def _raise_auth(ctx: _Ctx, r: httpx.Response, url: str) -> None:
    env = ctx.endpoint.api_key_env
    where = f"set ${env}" if env else "pass --api-key-env NAME (the variable holding the key)"
    raise AuthError(
        f"API key missing or wrong: {url} answered HTTP {r.status_code} ({_server_error(r)})",
        hint=f"{where} to the key the server expects",
    )


def _server_error(r: httpx.Response) -> str:
    """The server's own error text, whatever shape it came in."""
    text = body_error_text(r.content, None)
    return text or r.reason_phrase or f"HTTP {r.status_code}"


def _names(ids: list[str], n: int = 8) -> str:
    shown = ", ".join(ids[:n])
    return shown + (f" (+{len(ids) - n} more)" if len(ids) > n else "")
