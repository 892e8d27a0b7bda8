"""`llmctl smoke FILE | --url URL`: check that a served endpoint really answers (docs/smoke.md).

Parses options, finds the endpoint (from the profile, the running server's state, or --url),
calls `llmdeploy_cli.smoke.run_smoke` and renders its report. Exit codes (errors.ExitCode):
0 ok, 2 usage, 5 unreachable, 6 a check failed, 1 any other failure.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from llmdeploy_cli.cli.output import emit_json, out, warn
from llmdeploy_cli.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("smoke")(smoke)


def smoke(
    file: Annotated[
        Path | None, typer.Argument(help="Profile file (its endpoint and smoke: section).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Smoke this OpenAI-compatible URL instead of a profile."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model name to request (--url: default the first listed)."),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Environment variable holding the API key."),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="chat, embedding or rerank (--url; default chat)."),
    ] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="User message to send.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Tokens to generate.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0.001, help="Seconds per request.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> int:
    """Smoke a served model: it answers under its exact name, a plain and a streaming chat
    completion return text, finish_reason and usage, and the profile's expectations hold.
    Reports latency and time to first token."""
    from llmdeploy_cli.profile import SmokeSpec
    from llmdeploy_cli.smoke import SmokeFailed, run_smoke, smoke_routes

    if (file is None) == (url is None):
        raise UsageError(
            "give a profile FILE or --url URL (one of them)",
            hint="llmctl smoke profile.yml  |  llmctl smoke --url http://127.0.0.1:8000/v1",
        )
    if task is not None and task not in ("chat", "embedding", "rerank"):
        raise UsageError(f"--task must be chat, embedding or rerank, not {task!r}")

    tasks = None  # with --url the backend is unknown: chat only
    if file is not None:
        endpoint, spec, check_listed, tasks = _from_profile(file, model, task)
    else:
        endpoint, check_listed = _from_url(url, model, task, api_key_env, timeout)
        spec = SmokeSpec()
    if api_key_env:
        endpoint = dataclasses.replace(endpoint, api_key_env=api_key_env)
    if endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
        if api_key_env:
            raise UsageError(
                f"--api-key-env {api_key_env}: ${api_key_env} is not set",
                hint=f"export {api_key_env}=<the key>",
            )
        warn(f"${endpoint.api_key_env} is not set; requests go without an API key")

    overrides: dict[str, Any] = {}
    if prompt is not None:
        overrides["prompt"] = prompt
    if max_tokens is not None:
        overrides["max_tokens"] = max_tokens
    if timeout is not None:
        overrides["timeout"] = timeout
    if overrides:
        spec = spec.model_copy(update=overrides)

    try:
        report = run_smoke(
            endpoint, spec, check_listed=check_listed, routes=smoke_routes(spec, tasks)
        )
    except SmokeFailed as e:
        if not json_:
            _print_report(e.report)
        raise
    if json_:
        emit_json({"smoke": report.as_dict()})
    else:
        _print_report(report)
    return 0


# -- where the endpoint comes from ---------------------------------------------------------
def _from_profile(file: Path, model: str | None, task: str | None):
    from llmdeploy_cli.resolve import resolve_served

    r = resolve_served(file)
    endpoint = r.plan.endpoint
    if model:
        endpoint = dataclasses.replace(endpoint, model=model)
    if task:
        endpoint = dataclasses.replace(endpoint, task=task)
    return endpoint, r.profile.smoke, r.backend.lists_models, r.backend.tasks


def _from_url(url: str, model: str | None, task: str | None, key_env: str | None, timeout):
    from llmdeploy_cli.backend import Endpoint
    from llmdeploy_cli.openai_http.urls import openai_root
    from llmdeploy_cli.smoke import first_listed_model

    base = openai_root(url)
    if not model:
        key = os.environ.get(key_env) if key_env else None
        model = first_listed_model(base, api_key=key, api_key_env=key_env, timeout=timeout)
        check_listed: bool | None = True
    else:
        check_listed = None  # list when the server can; the completion decides
    endpoint = Endpoint(base_url=base, model=model, task=task or "chat", api_key_env=key_env)
    return endpoint, check_listed


# -- output ---------------------------------------------------------------------------------
MARKS = {"pass": "✓", "fail": "✗", "warn": "!", "skip": "-"}


def _print_report(report) -> None:
    width = max((len(c.name) for c in report.checks), default=0)
    for c in report.checks:
        out(f"{MARKS.get(c.status, '?')} {c.name:<{width}}  {c.detail}")
    figures = []
    if report.latency_s is not None:
        figures.append(f"latency {report.latency_s * 1000:.0f} ms")
    stream = report.exchange("stream")
    if stream is not None and stream.ttft_s is not None:
        first = stream.first_chunk_s
        extra = (
            f" (first chunk {first * 1000:.0f} ms)"
            if first is not None and first < stream.ttft_s
            else ""
        )
        figures.append(f"TTFT {stream.ttft_s * 1000:.0f} ms{extra}")
    if report.completion_tokens is not None:
        figures.append(f"{report.prompt_tokens} prompt + {report.completion_tokens} tokens")
    if report.text_field:
        figures.append(f"text in {report.text_field}")
    if figures:
        out("  " + " · ".join(figures))
    for w in report.warnings:
        warn(w)
    out(report.summary())
