"""`llmctl bench FILE | --url URL`: a load test with `vllm bench serve --save-result` key names.

Progress on stderr (Rich, when stderr is a terminal), the summary on stdout (or one JSON
document with --json). Exit codes: 0 ok, 1 every request failed, 2 usage, 5 unreachable
or the server was lost mid-run (the partial result is still printed and saved), 6 a
--fail-if gate failed, 130 Ctrl-C (what was measured is printed and saved).

A list for `--concurrency` or `--request-rate` (`1,4,16`) makes a sweep: one run per value,
one table, one result file holding every point. `llmctl bench compare A.json B.json ...`
(a subcommand, dispatched by `_BenchCommand`) puts results side by side with deltas and
gates regressions against a baseline.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from llmdeploy_cli.cli.bench_tables import (
    compare_table,
    fmt_failures,
    gate_value,
    gate_where,
    summary,
    summary_embedding,
    sweep_table,
)
from llmdeploy_cli.cli.output import emit_json, err_console, error_text, info, out, warn
from llmdeploy_cli.errors import ExitCode, LlmctlError, UsageError


def register(app: typer.Typer) -> None:
    app.command("bench", cls=_BenchCommand)(bench)


class _BenchCommand(TyperCommand):
    """`llmctl bench ...`, except `llmctl bench compare ...`, which is its own command."""

    def make_context(self, info_name, args, parent=None, **extra):
        if args and args[0] == "compare":
            cmd = typer.main.get_command(_compare_app())
            return cmd.make_context(f"{info_name} compare", args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


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
        str | None,
        typer.Option(
            "--concurrency",
            "-c",
            metavar="N[,N...]",
            help="Closed loop: at most N in flight; a list (1,4,16) sweeps.",
        ),
    ] = None,
    request_rate: Annotated[
        str | None,
        typer.Option(
            "--request-rate",
            metavar="R[,R...]",
            help="Open loop: requests per second (inf: all at once); a list (2,8,inf) sweeps.",
        ),
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
    task: Annotated[
        str | None,
        typer.Option("--task", help="chat or embedding (default: the profile's, else chat)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Embeddings: texts per request.")
    ] = 1,
    workers: Annotated[
        int,
        typer.Option("--workers", help="Processes that send the schedule (for high rates)."),
    ] = 1,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Draw latency CDFs (and a sweep's curve) to FILE.png."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="A saved result: --fail-if may then compare against it, "
            "e.g. 'p99_ttft_ms>+10%' (as in bench compare).",
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> int:
    """Load-test a chat or embeddings endpoint: TTFT, ITL, TPOT, E2E, throughput, goodput,
    sweeps, plots, CI gates.

    `llmctl bench compare A.json B.json ...` compares saved results (see its --help).
    """
    from llmdeploy_cli.bench.gate import evaluate, parse_gates
    from llmdeploy_cli.bench.metrics import embedding_result_keys, parse_goodput, result_keys
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
    concs = _int_list(concurrency, "--concurrency")
    rates = _rate_list(request_rate)
    if len(concs) > 1 and len(rates) > 1:
        raise UsageError("sweep one setting at a time: a list for --concurrency or for "
                         "--request-rate, not both")  # fmt: skip
    if task is not None and task not in ("chat", "embedding"):
        raise UsageError(f"--task {task!r}: use chat or embedding")
    if batch_size < 1 or workers < 1:
        raise UsageError("--batch-size and --workers must be >= 1")
    if plot is not None:
        from llmdeploy_cli.bench.plot import require_matplotlib

        require_matplotlib()
    notes: list[str] = []
    if num_prompts is None and duration is None:
        num_prompts = 100
    if not concs and not rates:
        concs = [1]
        notes.append("neither --concurrency nor --request-rate: one request at a time")
    rate = rates[0] if rates else math.inf
    conc = concs[0] if concs else None

    base_url, model_name, key, tok_dir, ep_task = _endpoint(file, url, model, api_key_env)
    task = task or ep_task
    known = embedding_result_keys() if task == "embedding" else result_keys()
    if task != "embedding" and batch_size != 1:
        raise UsageError("--batch-size is for embeddings (--task embedding)")
    base = None
    if baseline is not None:  # regression gates against a saved result (bench compare's)
        from llmdeploy_cli.bench import compare as cmp

        base = cmp.load(baseline)
        gates = [cmp.parse_compare_gate(t, known) for t in fail_if or []]
    else:
        gates = parse_gates(fail_if, known)
    workload, tok = _workload(
        dataset,
        tokenizer or tok_dir,
        None if num_prompts is None else num_prompts * batch_size,
        duration,
        max(rates, default=rate),
        max(concs, default=conc),
        input_len,
        None if task == "embedding" else output_len,
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
        concurrency=conc,
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
        task=task,
        batch_size=batch_size,
        workers=workers,
    )
    if len(concs) > 1:
        sweep, points = "concurrency", [dataclasses.replace(cfg, concurrency=c) for c in concs]
    elif len(rates) > 1:
        sweep, points = "request_rate", [dataclasses.replace(cfg, request_rate=r) for r in rates]
    else:
        sweep, points = None, [cfg]
    runs = []
    with _Progress() as progress:
        for i, point in enumerate(points):
            progress.label = _point_label(sweep, point) or "bench"
            if i > 0:  # the first point checked the endpoint and settled forcing
                point = dataclasses.replace(point, check=False, model=runs[0].result["model_id"])
                if not runs[0].result["llmctl"]["forced_output_len"]:
                    point = dataclasses.replace(point, force_output_len="off")
            runs.append(run_bench(point, progress))
            if runs[-1].interrupted or runs[-1].server_lost:
                break
    checks_per_run = []
    for p, run in zip(points, runs, strict=False):
        if base is not None:
            checks = _baseline_checks(gates, base, baseline, _point_label(sweep, p), run.result)
        else:
            checks = evaluate(gates, run.result) if gates else []
        if checks:
            run.result["llmctl"]["gates"] = checks
        checks_per_run.append(checks)
    doc = runs[0].result if sweep is None else _sweep_doc(sweep, points, runs)
    if save_result is not None:
        from llmdeploy_cli.fsutil import atomic_write

        atomic_write(save_result, json.dumps(doc, indent=2, default=str) + "\n")
    if plot is not None:
        _plot(plot, sweep, points, runs)

    if json_:
        emit_json(doc)
    else:
        for note in dict.fromkeys(n for run in runs for n in run.result["llmctl"]["notes"]):
            warn(note)
        if sweep is None:
            r = runs[0].result
            out(summary_embedding(r) if task == "embedding" else summary(r))
        else:
            out(sweep_table(doc))
        if save_result is not None:
            info(f"result written to {save_result}")
        if plot is not None:
            info(f"plot written to {plot}")
    return _exit(runs, [c for cs in checks_per_run for c in cs], save_result, json_)


def _int_list(text: str | None, flag: str) -> list[int]:
    if text is None:
        return []
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: give a number or a list like 1,4,16") from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"{flag} must be > 0")
    return values


def _rate_list(text: str | None) -> list[float]:
    if text is None:
        return []
    try:
        values = [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UsageError(
            f"--request-rate {text!r}: give a number, inf, or a list like 2,8,inf"
        ) from None
    if not values or any(not v > 0 for v in values):
        raise UsageError("--request-rate must be > 0 (or inf)")
    return values


def _point_label(sweep: str | None, cfg) -> str:
    if sweep == "concurrency":
        return f"concurrency={cfg.concurrency}"
    if sweep == "request_rate":
        r = cfg.request_rate
        return "request_rate=inf" if math.isinf(r) else f"request_rate={r:g}"
    return ""


def _sweep_doc(sweep: str, points: list, runs: list) -> dict:
    """One file for a sweep: every point's full result (vLLM keys), in order."""
    from datetime import datetime

    values = [getattr(p, sweep) for p in points]
    return {
        "date": f"{datetime.now():%Y%m%d-%H%M%S}",
        "sweep": {
            "parameter": sweep,
            "values": ["inf" if isinstance(v, float) and math.isinf(v) else v for v in values],
        },
        "points": [run.result for run in runs],
        "llmctl": {
            "points_run": len(runs),
            "interrupted": any(run.interrupted for run in runs),
            "server_lost": any(run.server_lost for run in runs),
        },
    }


def _plot(path: Path, sweep: str | None, points: list, runs: list) -> None:
    from llmdeploy_cli.bench.plot import draw, series

    data = [
        series(_point_label(sweep, p), run.result, run.records)
        for p, run in zip(points, runs, strict=False)
    ]
    r0 = runs[0].result
    what = "embeddings" if r0["endpoint_type"] == "openai-embeddings" else "chat"
    title = f"llmctl bench: {r0['model_id']} ({what}) at {r0['llmctl']['url']}"
    try:
        draw(path, data, title, sweep)
    except OSError as e:
        raise LlmctlError(f"cannot write the plot {path}: {e.strerror or e}") from None


def _baseline_checks(gates, base, path: Path, label: str, result: dict) -> list[dict]:
    """This run (or sweep point) against the baseline's point of the same label, or against
    the baseline when it is a single run. A point the baseline lacks fails its gates."""
    from llmdeploy_cli.bench import compare as cmp

    here = cmp.ResultFile(Path("this run"), None, [(label, result)])
    _, b, cand = cmp.match(base, here)[0]
    out = []
    for g in gates:
        failed, value = g.check(b, cand)
        out.append(
            {"gate": g.text, "key": g.key, "mode": g.mode, "baseline": str(path),
             "value": value, "failed": failed}
        )  # fmt: skip
    return out


def _exit(runs: list, checks: list[dict], saved: Path | None, json_: bool) -> int:
    where = f"; partial result written to {saved}" if saved else ""
    completed = sum(run.result["completed"] for run in runs)
    failed = sum(run.result["failed"] for run in runs)
    if any(run.interrupted for run in runs):
        if not json_:
            error_text(f"interrupted{where}")
        return 130
    if any(run.server_lost for run in runs):
        if not json_:
            error_text(
                f"lost the server mid-run: {completed} completed, {failed} failed{where}",
                "the server stopped answering (crashed or was stopped); check its log",
            )
        return int(ExitCode.UNREACHABLE)
    if completed == 0:
        if not json_:
            fails: dict[str, int] = {}
            ex: dict[str, str] = {}
            for run in runs:
                for k, v in run.result["llmctl"]["failures"].items():
                    fails[k] = fails.get(k, 0) + v
                ex = {**run.result["llmctl"]["failure_examples"], **ex}
            first = next(iter(fails), "none")
            error_text(
                f"every request failed: {fmt_failures(fails)}",
                f"first {first}: {ex.get(first, '')}" if ex else None,
            )
        return int(ExitCode.RUNTIME)
    failed_gates = [c for c in checks if c["failed"]]
    if failed_gates:
        if not json_:
            for c in failed_gates:
                if "mode" in c:
                    error_text(f"--fail-if {c['gate']}: failed ({gate_value(c)})")
                    continue
                v = "no value" if c["value"] is None else f"{c['value']:.4g}"
                error_text(f"--fail-if {c['gate']}: failed ({c['key']} = {v})")
        return int(ExitCode.ASSERTION)
    return 0


def _endpoint(file, url, model, api_key_env):
    """(base_url, model or None, api key or None, tokenizer dir or None, task)."""
    import os

    if file is not None:
        from llmdeploy_cli.resolve import resolve_served

        r = resolve_served(file)  # port: auto -> the port its running server got
        ep = r.plan.endpoint
        task = "embedding" if ep.task in ("embedding", "embed", "embeddings") else ep.task
        if task not in ("chat", "embedding"):
            raise UsageError(
                f"bench measures chat and embedding endpoints; this profile serves '{ep.task}'",
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
        return ep.base_url, model or ep.model, key, tok_dir, task
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise UsageError(
            f"--url {url!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:8000/v1"
        )
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise UsageError(f"the API key variable {api_key_env} is not set")
    return url.rstrip("/"), model, key, None, "chat"


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
        self.label = "bench"

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
            label = "warm-up" if phase == "warmup" else self.label
            self.task = self.p.add_task(label, total=total, status="")
        elif phase == "request" and self.task is not None:
            status = f"failed {ev['failed']}" if ev.get("failed") else ""
            self.p.update(self.task, completed=ev["done"], status=status)

    def __exit__(self, *exc):
        if self.p is not None:
            self.p.stop()
        return False


# -- llmctl bench compare ---------------------------------------------------------------------


def _compare_app() -> typer.Typer:
    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    app.command()(compare)
    return app


def compare(
    files: Annotated[list[Path], typer.Argument(help="Result files (--save-result), 2 or more.")],
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="The file deltas and gates compare against (default: the first FILE).",
        ),
    ] = None,  # fmt: skip
    fail_if: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-if",
            help="Regression gate, exit 6 when true: 'p99_ttft_ms>+10%' (change in %), "
            "'p99_ttft_ms>+5' (absolute change), 'failed>0' (value); repeatable.",
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> int:
    """Compare bench results: headline figures side by side, deltas against a baseline."""
    from llmdeploy_cli.bench import compare as cmp
    from llmdeploy_cli.bench.metrics import embedding_result_keys, result_keys

    paths = list(files)
    if baseline is not None:
        paths = [baseline] + [p for p in paths if p != baseline]
    if len(paths) < 2:
        raise UsageError(
            "compare needs at least two result files",
            hint="llmctl bench compare base.json new.json (or --baseline base.json new.json)",
        )
    loaded = [cmp.load(p) for p in paths]
    known = list(dict.fromkeys(result_keys() + embedding_result_keys()))
    gates = [cmp.parse_compare_gate(t, known) for t in fail_if or []]
    sections = cmp.table(loaded)
    checks = cmp.evaluate(gates, loaded) if gates else []
    if json_:
        emit_json(
            {
                "baseline": str(paths[0]),
                "files": [str(p) for p in paths],
                "points": sections,
                "gates": checks,
            }
        )
    else:
        out(compare_table(loaded, sections))
        for c in checks:
            if c["failed"]:
                continue
            info(f"--fail-if {c['gate']}: ok ({gate_where(c)}{gate_value(c)})")
    failed = [c for c in checks if c["failed"]]
    if failed:
        if not json_:
            for c in failed:
                error_text(f"--fail-if {c['gate']}: failed ({gate_where(c)}{gate_value(c)})")
        return int(ExitCode.ASSERTION)
    return 0


__all__ = ["LlmctlError", "compare", "register", "summary"]
