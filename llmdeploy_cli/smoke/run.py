"""run_smoke: the order of the checks, the model listing, and `smoke --url` without --model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdeploy_cli.openai_http.clients import sync_client
from llmdeploy_cli.smoke.chat import _chat, _completion, _expectations, _stream
from llmdeploy_cli.smoke.embed import _embedding, _rerank
from llmdeploy_cli.smoke.report import SmokeFailed, SmokeReport
from llmdeploy_cli.smoke.sdk import sdk_pass
from llmdeploy_cli.smoke.transport import _Ctx, _finish_early, _list_models, _model_missing, _names

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Endpoint
    from llmdeploy_cli.profile import SmokeSpec

EMBED_TASKS = ("embedding", "embed", "embeddings")


def run_smoke(
    endpoint: Endpoint,
    spec: SmokeSpec,
    *,
    api_key: str | None = None,
    timeout: float | None = None,
    check_listed: bool | None = None,
    raise_on_failure: bool = True,
    routes: tuple[str, ...] = ("chat",),
) -> SmokeReport:
    """Smoke one endpoint; return the report or raise (see the module docstring).

    `api_key` overrides the key read from `endpoint.api_key_env`. `timeout` (seconds per
    request) overrides `spec.timeout`. `check_listed`: True requires the model in
    GET /v1/models; None tries the listing and only warns when it is unavailable or does
    not name the model (the completion then decides); False (a backend that may not list
    its model: pass `not backend.lists_models`) tries the listing too, passes when the
    server lists the model and otherwise skips the check without a warning: the server's
    answer decides, not the backend's name.
    A chat endpoint then gets an SDK pass (smoke/sdk.py) once its own checks pass.
    `routes` (chat endpoints): "chat" always; "completions" adds one call on the legacy
    /v1/completions route (`smoke_routes` says which a profile's backend serves).
    With `raise_on_failure=False` a failed check is returned in the report instead of
    raising SmokeFailed (transport, auth and HTTP errors still raise).
    """
    per_request = float(timeout if timeout is not None else spec.timeout)
    key = api_key if api_key is not None else endpoint.api_key()
    report = SmokeReport(
        base_url=endpoint.base_url.rstrip("/"), model=endpoint.model, task=endpoint.task
    )
    ctx = _Ctx(endpoint, report, per_request)
    with sync_client(
        report.base_url,
        api_key=key,
        timeout=per_request,
        max_connections=2,
        headers={"Accept": "application/json"},
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
            if "completions" in routes:
                _completion(ctx, spec)
            sdk_pass(ctx, spec, key)
    if raise_on_failure and not report.ok:
        raise SmokeFailed(report)
    return report


def smoke_routes(spec: SmokeSpec, tasks: object = None) -> tuple[str, ...]:
    """The routes a smoke calls: `smoke.routes` when the profile sets it, else chat plus the
    legacy completions route where the backend declares it serves that (`tasks`: the
    backend's declared tasks; None or NOT_SUPPORTED, as with --url: chat only)."""
    if spec.routes is not None:
        return tuple(spec.routes)
    served = {getattr(t, "value", t) for t in tasks} if isinstance(tasks, frozenset) else set()
    return ("chat", "completions") if "completions" in served else ("chat",)


def _check_listed(ctx: _Ctx, mode: bool | None) -> None:
    name = "model listed"
    ids, why = _list_models(ctx)
    model = ctx.endpoint.model
    if mode is False and (ids is None or model not in ids):
        if ids is not None:
            ctx.report.listed_models = ids
        ctx.check(name, "skip", f"not listed ({why or 'other names only'}); the completion decides")
        return
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


def first_listed_model(
    base_url: str,
    *,
    api_key: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
) -> str:
    """The first model GET {base_url}/models lists (for `smoke --url` without --model)."""
    from llmdeploy_cli.backend import Endpoint
    from llmdeploy_cli.errors import UsageError

    t = float(timeout) if timeout else 30.0
    endpoint = Endpoint(base_url=base_url.rstrip("/"), model="", api_key_env=api_key_env)
    report = SmokeReport(base_url=endpoint.base_url, model="", task="chat")
    ctx = _Ctx(endpoint, report, t)
    with sync_client(endpoint.base_url, api_key=api_key, timeout=t) as client:
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
