"""`llmctl bench FILE | --url URL`: a load test with `vllm bench serve --save-result` key names.

Progress on stderr (Rich, when stderr is a terminal), the summary on stdout (or one JSON
document with --json). Exit codes: 0 ok, 1 every request failed, 2 usage, 5 unreachable
or the server was lost mid-run (the partial result is still printed and saved), 6 a
--fail-if gate failed, 130 Ctrl-C (what was measured is printed and saved).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from llmdeploy_cli.cli.output import emit_json, err_console, error_text, info, out, warn
from llmdeploy_cli.errors import ExitCode, LlmctlError, UsageError


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    file: Annotated[
        Path | None, typer.Argument(help="Profile file: the endpoint and tokenizer come from it.")
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="OpenAI-compatible root, e.g. http://h:8000/v1.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model name requests carry (default: the profile's, "
            "else the first in /v1/models).",
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Environment variable holding the API key."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", help="Closed loop: at most N in flight.")
    ] = None,
    request_rate: Annotated[
        float | None,
        typer.Option("--request-rate", help="Open loop: requests per second (inf: all at once)."),
    ] = None,
    burstiness: Annotated[
        float, typer.Option("--burstiness", help="Gamma shape: 1 Poisson, <1 burstier, >1 even.")
    ] = 1.0,
    num_prompts: Annotated[
        int | None, typer.Option("--num-prompts", "-n", help="Requests to measure (default 100).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Send for S seconds instead of -n.")
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Requests sent first, not measured.")] = 0,
    input_len: Annotated[
        int, typer.Option("--input-len", help="Random prompts: tokens per prompt.")
    ] = 128,
    output_len: Annotated[
        int | None,
        typer.Option("--output-len", help="Tokens to generate (max_tokens; forced, see below)."),
    ] = 128,
    range_ratio: Annotated[
        float, typer.Option("--range-ratio", help="Lengths drawn from L*(1-r)..L*(1+r).")
    ] = 0.0,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="JSONL or ShareGPT JSON prompts file.")
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option("--tokenizer", help="Local model/tokenizer dir (default: the profile's)."),
    ] = None,
    force_output_len: Annotated[
        bool | None,
        typer.Option(
            "--force-output-len/--no-force-output-len",
            help="Send ignore_eos + min_tokens so answers are exactly --output-len long "
            "(default: on, dropped with a note if the server refuses them).",
        ),
    ] = None,
    goodput: Annotated[
        list[str] | None,
        typer.Option("--goodput", help="SLO for goodput, KEY:MS (ttft, tpot, e2el); repeatable."),
    ] = None,
    fail_if: Annotated[
        list[str] | None,
        typer.Option("--fail-if", help="Exit 6 when true, e.g. 'p99_ttft_ms>500'; repeatable."),
    ] = None,
    save_result: Annotated[
        Path | None, typer.Option("--save-result", help="Write the result JSON here.")
    ] = None,
    save_detailed: Annotated[
        bool, typer.Option("--save-detailed", help="Add per-request lists (ttfts, itls, ...).")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds without a byte before a request fails.")
    ] = 300.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for prompts and the schedule.")] = 0,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> int:
    """Load-test a chat endpoint: TTFT, ITL, TPOT, E2E, throughput, goodput, CI gates."""
    from llmdeploy_cli.bench.gate import evaluate, parse_gates
    from llmdeploy_cli.bench.metrics import parse_goodput, result_keys
    from llmdeploy_cli.bench.runner import BenchConfig, run_bench

    if file is not None and str(file).split(":")[0] in ("ttft", "tpot", "e2el"):
        raise UsageError(
            f"'{file}' looks like a --goodput SLO, not a profile file",
            hint="quote several SLOs as one value: --goodput 'ttft:500 tpot:50'",
        )
    if (file is None) == (url is None):
        raise UsageError("give a profile FILE or --url URL (one of them)")
    if num_prompts is not None and duration is not None:
        raise UsageError("give --num-prompts or --duration, not both")
    try:
        slo = parse_goodput(goodput or [])
    except ValueError as e:
        raise UsageError(str(e)) from None
    gates = parse_gates(fail_if, result_keys())
    notes: list[str] = []
    if num_prompts is None and duration is None:
        num_prompts = 100
    rate = math.inf if request_rate is None else request_rate
    if concurrency is None and request_rate is None:
        concurrency = 1
        notes.append("neither --concurrency nor --request-rate: one request at a time")

    base_url, model_name, key, tok_dir = _endpoint(file, url, model, api_key_env)
    workload, tok = _workload(
        dataset,
        tokenizer or tok_dir,
        num_prompts,
        duration,
        rate,
        concurrency,
        input_len,
        output_len,
        range_ratio,
        seed,
    )
    workload.notes[:0] = notes
    force = "auto" if force_output_len is None else ("on" if force_output_len else "off")
    cfg = BenchConfig(
        base_url=base_url,
        model=model_name,
        workload=workload,
        api_key=key,
        concurrency=concurrency,
        request_rate=rate,
        burstiness=burstiness,
        num_prompts=num_prompts,
        duration=duration,
        warmup=warmup,
        goodput=slo,
        force_output_len=force,
        seed=seed,
        timeout=timeout,
        tokenizer=tok,
        detailed=save_detailed,
    )
    with _Progress() as progress:
        run = run_bench(cfg, progress)
    result = run.result
    checks = evaluate(gates, result) if gates else []
    if checks:
        result["llmctl"]["gates"] = checks
    if save_result is not None:
        from llmdeploy_cli.fsutil import atomic_write

        atomic_write(save_result, json.dumps(result, indent=2, default=str) + "\n")

    if json_:
        emit_json(result)
    else:
        for note in result["llmctl"]["notes"]:
            warn(note)
        out(summary(result))
        if save_result is not None:
            info(f"result written to {save_result}")
    return _exit(run, result, checks, save_result, json_)


def _exit(run, result: dict, checks: list[dict], saved: Path | None, json_: bool) -> int:
    where = f"; partial result written to {saved}" if saved else ""
    if run.interrupted:
        if not json_:
            error_text(f"interrupted{where}")
        return 130
    if run.server_lost:
        if not json_:
            error_text(
                f"lost the server mid-run: {result['completed']} completed, "
                f"{result['failed']} failed{where}",
                "the server stopped answering (crashed or was stopped); check its log",
            )
        return int(ExitCode.UNREACHABLE)
    if result["completed"] == 0:
        if not json_:
            fails = result["llmctl"]["failures"]
            ex = result["llmctl"]["failure_examples"]
            first = next(iter(fails), "none")
            error_text(
                f"every request failed: {_fmt_failures(fails)}",
                f"first {first}: {ex.get(first, '')}" if ex else None,
            )
        return int(ExitCode.RUNTIME)
    failed_gates = [c for c in checks if c["failed"]]
    if failed_gates:
        if not json_:
            for c in failed_gates:
                v = "no value" if c["value"] is None else f"{c['value']:.4g}"
                error_text(f"--fail-if {c['gate']}: failed ({c['key']} = {v})")
        return int(ExitCode.ASSERTION)
    return 0


def _endpoint(file, url, model, api_key_env):
    """(base_url, model or None, api key or None, tokenizer dir or None)."""
    import os

    if file is not None:
        from llmdeploy_cli.resolve import resolve

        if _auto_port(file):
            raise UsageError(
                f"{file} has `server.port: auto`, so only the running server knows its port",
                hint="pass --url http://HOST:PORT/v1 (llmctl status shows it)",
            )
        r = resolve(file)
        ep = r.plan.endpoint
        if ep.task != "chat":
            raise UsageError(
                f"bench measures chat endpoints; this profile serves '{ep.task}'",
            )
        env_name = api_key_env or ep.api_key_env
        key = os.environ.get(env_name) if env_name else None
        if env_name and not key:
            raise UsageError(f"the API key variable {env_name} is not set")
        tok_dir = None
        for cand in (r.profile.model.tokenizer, None):
            p = _local_dir(r.profile, cand)
            if p is not None:
                tok_dir = p
                break
        return ep.base_url, model or ep.model, key, tok_dir
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise UsageError(
            f"--url {url!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:8000/v1"
        )
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise UsageError(f"the API key variable {api_key_env} is not set")
    return url.rstrip("/"), model, key, None


def _auto_port(file: Path) -> bool:
    from llmdeploy_cli.profile import load_profile

    return load_profile(file).server.port == "auto"


def _local_dir(profile, source: str | None) -> Path | None:
    if source is not None:
        p = Path(source).expanduser()
        if not p.is_absolute() and profile.path is not None:
            p = profile.path.parent / p
        return p if p.is_dir() else None
    p = profile.model_path()
    if p is None:
        return None
    return p if p.is_dir() else (p.parent if p.is_file() else None)


def _workload(dataset, tok_dir, n, duration, rate, conc, input_len, output_len, ratio, seed):
    from llmdeploy_cli.bench.workload import file_workload, load_tokenizer, random_workload

    tok = load_tokenizer(tok_dir) if tok_dir is not None else None
    if tok_dir is not None and tok is None:
        warn(f"could not load a tokenizer from {tok_dir}: using words")
    if input_len <= 0 or (output_len is not None and output_len <= 0):
        raise UsageError("--input-len and --output-len must be > 0")
    if dataset is not None:
        return file_workload(dataset, n, output_len, seed, tok), tok
    if n is None:  # duration: enough distinct prompts, then they repeat
        est = duration * (rate if not math.isinf(rate) else 10.0 * (conc or 1))
        n_make = int(min(max(est, 16), 2048))
    else:
        n_make = n
    return random_workload(n_make, input_len, output_len, ratio, seed, tok), tok


class _Progress:
    """Rich live progress on stderr, only when stderr is a terminal."""

    def __init__(self):
        self.p = None
        self.task = None

    def __enter__(self):
        con = err_console()
        if con.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.p = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=con,
                transient=True,
            )
            self.p.start()
        return self

    def __call__(self, ev: dict) -> None:
        if self.p is None:
            return
        phase = ev.get("phase")
        if phase in ("warmup", "run"):
            if self.task is not None:
                self.p.remove_task(self.task)
            total = ev.get("total")
            label = "warm-up" if phase == "warmup" else "bench"
            self.task = self.p.add_task(label, total=total, status="")
        elif phase == "request" and self.task is not None:
            status = f"failed {ev['failed']}" if ev.get("failed") else ""
            self.p.update(self.task, completed=ev["done"], status=status)

    def __exit__(self, *exc):
        if self.p is not None:
            self.p.stop()
        return False


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def _fmt_failures(fails: dict) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(fails.items(), key=lambda kv: -kv[1]))


def summary(r: dict) -> str:
    """The run as a text table (vLLM's layout, llmctl's extra lines at the end)."""
    x = r["llmctl"]
    lines = [" Serving Benchmark Result ".center(60, "=")]

    def row(label, value):
        lines.append(f"{label:<44} {value}")

    row("Successful requests:", r["completed"])
    row("Failed requests:", r["failed"])
    if x["failures"]:
        row("  failures by class:", _fmt_failures(x["failures"]))
    if r["max_concurrency"] is not None:
        row("Maximum request concurrency:", r["max_concurrency"])
    if r["request_rate"] != "inf":
        row("Request rate configured (RPS):", _fmt(r["request_rate"]))
    row("Benchmark duration (s):", _fmt(r["duration"]))
    row("Total input tokens:", r["total_input_tokens"])
    row("Total generated tokens:", f"{r['total_output_tokens']}  (from {_sources(x)})")
    row("Request throughput (req/s):", _fmt(r["request_throughput"]))
    if r["request_goodput"] is not None:
        row("Request goodput (req/s):", _fmt(r["request_goodput"]))
    row("Output token throughput (tok/s):", _fmt(r["output_throughput"]))
    row("Peak output token throughput (tok/s):", _fmt(r["max_output_tokens_per_s"]))
    row("Peak concurrent requests:", r["max_concurrent_requests"])
    row("Total token throughput (tok/s):", _fmt(r["total_token_throughput"]))
    for key, title in (
        ("ttft", "Time to First Token"),
        ("tpot", "Time per Output Token (excl. 1st token)"),
        ("itl", "Inter-token Latency"),
        ("e2el", "End-to-end Latency"),
    ):
        lines.append(f" {title} ".center(60, "-"))
        row(f"Mean {key.upper()} (ms):", _fmt(r[f"mean_{key}_ms"]))
        row(f"Median {key.upper()} (ms):", _fmt(r[f"median_{key}_ms"]))
        for p in (90, 95, 99):
            row(f"P{p} {key.upper()} (ms):", _fmt(r.get(f"p{p}_{key}_ms")))
    lines.append(" llmctl ".center(60, "-"))
    fc = x["first_chunk"]
    row("Median first-chunk time (ms, vLLM's TTFT):", _fmt(fc.get("median_first_chunk_ms")))
    sl = x["send_lag"]
    row(
        "Send lag median / max (ms):",
        f"{_fmt(sl.get('median_send_lag_ms'))} / {_fmt(sl.get('max_send_lag_ms'))}",
    )
    if x.get("seen"):
        row("Chunks carried:", ", ".join(sorted(x["seen"])))
    for g in x.get("gates", []):
        row(f"--fail-if {g['gate']}:", "FAILED" if g["failed"] else "ok")
    lines.append("=" * 60)
    return "\n".join(lines)


def _sources(x: dict) -> str:
    src = x.get("token_source") or {}
    return ", ".join(f"{k} {v}" for k, v in src.items()) or "-"


__all__ = ["register", "summary", "LlmctlError"]
