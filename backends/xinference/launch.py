"""Xinference's launch of the model once the server is up, through its REST API.

The same call `xinference launch` makes (POST /v1/models, waiting for the model), with
the key or a fresh login token in a header, never in an argv.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from llmctl_backends.xinference.options import MISSING_NAME, XinferenceOptions

from llmdeploy_cli.backend import Endpoint, Plan
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    import httpx
    from llmctl_backends.xinference.backend import XinferenceBackend


def launch_model(
    backend: XinferenceBackend, client: httpx.Client, plan: Plan, profile: Profile, report
) -> None:
    """Launch the model with POST /v1/models (what `xinference launch` does) and wait.

    Skips the launch when the uid is already running (a server llmctl does not manage,
    or a second `serve` against the same server).
    """
    import time
    from urllib.parse import quote

    import httpx

    from llmdeploy_cli.command import scrub
    from llmdeploy_cli.errors import (
        LlmctlError,
        NotReadyError,
        UnreachableError,
        UsageError,
    )
    from llmdeploy_cli.openai_http.failures import TIMEOUT, classify
    from llmdeploy_cli.openai_http.wire import body_error_text

    if backend.model_name(profile, backend.options(profile)) is None:
        raise UsageError(MISSING_NAME, hint="e.g. options: {model_name: qwen2.5-instruct}")
    ep = plan.endpoint
    root = ep.base_url.removesuffix("/v1")
    wait = profile.health.load_timeout or backend.timeouts[1]
    deadline = time.monotonic() + wait
    try:
        key, secrets = _launch_credential(backend, client, root, plan, profile, report)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        while True:
            r = client.get(f"{root}/v1/models/{quote(ep.model, safe='')}", headers=headers)
            if r.status_code == 200:
                report(f"launch: model uid '{ep.model}' is already running", None)
                return
            if r.status_code in (401, 403):
                raise LlmctlError(
                    f"launch: Xinference refused the request ({r.status_code})",
                    hint=_auth_hint(ep),
                )
            if r.status_code != 503:  # 400: no such uid yet
                break
            # 503: launched by someone else and still loading: wait for it.
            if time.monotonic() >= deadline:
                raise NotReadyError(
                    f"launch: model '{ep.model}' was still loading after {wait:.0f} s",
                    hint="raise health.load_timeout",
                )
            report(f"launch: model uid '{ep.model}' is loading; waiting", None)
            time.sleep(2.0)
        payload = backend.launch_payload(profile)
        launch = next(st for st in plan.steps if st.name == "launch")
        report(f"launch: {launch.command.display()}", None)
        r = client.post(
            f"{root}/v1/models",
            json=payload,
            headers=headers,
            timeout=httpx.Timeout(max(deadline - time.monotonic(), 1.0), connect=10.0),
        )
    except httpx.TransportError as e:
        failure = classify(e)
        if failure.kind == TIMEOUT:
            raise NotReadyError(
                f"launch: model '{ep.model}' was not ready after {wait:.0f} s",
                hint="raise health.load_timeout; the server log shows download/load progress",
            ) from None
        raise UnreachableError(
            f"launch: Xinference at {root} unreachable ({failure.kind}: {failure.message})"
        ) from None
    if r.status_code != 200:
        detail = body_error_text(r.content, r.status_code, limit=1 << 20)
        detail = scrub(detail.strip(), secrets)[-2000:]
        hint = _auth_hint(ep) if r.status_code in (401, 403) else None
        raise LlmctlError(
            f"launch failed ({r.status_code}): {detail.splitlines()[-1] if detail else ''}",
            hint=hint or (detail or None),
        )
    report(f"launch: model uid '{ep.model}' is ready", 1.0)


def _launch_credential(
    backend: XinferenceBackend,
    client: httpx.Client,
    root: str,
    plan: Plan,
    profile: Profile,
    report,
) -> tuple[str | None, set[str]]:
    """What the launch sends as its bearer token, and every secret to scrub: the
    profile's key, or, with a login, a fresh access token from POST /token (an API key
    cannot launch, and a token pasted into the environment expires)."""
    from llmdeploy_cli.errors import LlmctlError, UsageError
    from llmdeploy_cli.openai_http.wire import loads

    opts: XinferenceOptions = backend.options(profile)
    key = plan.endpoint.api_key()
    secrets = plan.secrets() | ({key} if key else set())
    if not (opts.login_user_env and backend.auth_on(profile, opts)):
        return key, secrets
    env = {**os.environ, **profile.env}
    user, password = env.get(opts.login_user_env), env.get(opts.login_password_env)
    missing = [
        n for n, v in ((opts.login_user_env, user), (opts.login_password_env, password)) if not v
    ]
    if missing:
        raise UsageError(
            f"launch: ${' and $'.join(missing)} not set (options.login_user_env / "
            "login_password_env name them)",
            hint="export the Xinference user name and password before serving",
        )
    secrets.add(password)
    report(f"launch: logging in as '{user}' (POST /token)", None)
    r = client.post(f"{root}/token", json={"username": user, "password": password})
    token = None
    if r.status_code == 200:
        try:
            doc = loads(r.content)
        except ValueError:
            doc = None
        token = doc.get("access_token") if isinstance(doc, dict) else None
    if not token:
        raise LlmctlError(
            f"launch: Xinference refused the login of '{user}' ({r.status_code})",
            hint=f"check the user in ${opts.login_user_env} and the password in "
            f"${opts.login_password_env}, and that options.home is the home where the "
            "user was created",
        )
    secrets.add(token)
    return token, secrets


def _auth_hint(ep: Endpoint) -> str:
    if ep.api_key_env:
        return f"check the key in ${ep.api_key_env} and that it may list and launch models"
    return (
        "this Xinference has auth on: set server.api_key_env to a key created in it "
        "(and options.home), or start it with options.auth: false"
    )
