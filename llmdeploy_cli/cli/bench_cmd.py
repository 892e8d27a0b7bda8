"""`llmctl bench FILE | --url URL`: a load test with `vllm bench serve --save-result` key names.

Progress on stderr (Rich when stderr is a terminal, else a line every few seconds), the
summary on stdout (or one JSON document with --json). Exit codes (docs/cli.md): 0 ok,
1 could not run (the server refused the first request), 2 usage, 5 unreachable or the
server was lost mid-run (the partial result is still printed and saved), 6 a --fail-if
gate failed, 7 it ran and requests failed, 130 Ctrl-C (what was measured is kept).

A list for `--concurrency` or `--request-rate` (`1,4,16`) makes a sweep: one run per value,
one table, one result file holding every point. `llmctl bench compare A.json B.json ...`
(a subcommand, dispatched by `_BenchCommand`) puts results side by side with deltas and
gates regressions against a baseline.

This module parses options and renders; the bench itself (target, workload, sweep, gates,
result document, outcome) is library calls in bench/sweep.py.
"""

from __future__ import annotations

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

PROGRESS_EVERY = 5.0  # seconds between plain progress lines (LLMCTL_BENCH_PROGRESS_S)


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
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat",
            help="Measure K times back to back, report as one (run-to-run spread for "
            "--baseline gates).",
        ),
    ] = 1,
    input_len: Annotated[
        int, typer.Option("--input-len", help="Random prompts: tokens per prompt.")
    ] = 128,
    output_len: Annotated[
        int | None,
        typer.Option(
            "--output-len",
            help="Tokens to generate (max_tokens; forced, see below). Default 128; with "
            "--dataset each prompt's own length, unless given.",
        ),
    ] = None,
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
    from llmdeploy_cli.bench import sweep
    from llmdeploy_cli.bench.gate import parse_gates
    from llmdeploy_cli.bench.metrics import embedding_result_keys, parse_goodput, result_keys
    from llmdeploy_cli.bench.runner import BenchConfig
    from llmdeploy_cli.bench.sweep import build_workload, resolve_target, run_sweep

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
    if batch_size < 1 or workers < 1 or repeat < 1:
        raise UsageError("--batch-size, --workers and --repeat must be >= 1")
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

    target = resolve_target(file, url, model, api_key_env)
    task = task or target.task
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
    workload, tok = build_workload(
        dataset,
        tokenizer or target.tokenizer_dir,
        None if num_prompts is None else num_prompts * batch_size,
        duration,
        max(rates, default=rate),
        max(concs, default=conc),
        input_len,
        None if task == "embedding" else output_len,
        range_ratio,
        seed,
        warn=warn,
    )
    workload.notes[:0] = notes
    force = "auto" if force_output_len is None else ("on" if force_output_len else "off")
    cfg = BenchConfig(
        base_url=target.base_url,
        model=target.model,
        workload=workload,
        api_key=target.api_key,
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
    with _Progress() as progress:
        result = run_sweep(
            cfg, concs, rates, progress, gates=gates, baseline=base, baseline_path=baseline,
            repeat=repeat,
        )  # fmt: skip
    if save_result is not None:
        sweep.save(result, save_result)
    if plot is not None:
        sweep.plot(plot, result)

    if json_:
        emit_json(result.doc)
    else:
        for note in result.notes:
            if note not in progress.said:
                warn(note)
        if result.sweep is None:
            r = result.runs[0].result
            out(summary_embedding(r) if task == "embedding" else summary(r))
        else:
            out(sweep_table(result.doc))
        if save_result is not None:
            info(f"result written to {save_result}")
        if plot is not None:
            info(f"plot written to {plot}")
    end = sweep.outcome(result)
    if not json_:
        _say_outcome(end, save_result)
    return end.code


def _say_outcome(end, saved: Path | None) -> None:
    where = f"; partial result written to {saved}" if saved else ""
    if end.kind == "interrupted":
        error_text(f"interrupted{where}")
    elif end.kind == "server_lost":
        error_text(
            f"lost the server mid-run: {end.completed} completed, {end.failed} failed{where}",
            "the server stopped answering (crashed or was stopped); check its log",
        )
    elif end.kind in ("all_failed", "requests_failed"):
        first = next(iter(end.failures), "none")
        ex = end.failure_examples
        total = end.completed + end.failed
        what = (
            "every request failed"
            if end.kind == "all_failed"
            else f"{end.failed} of {total} requests failed"
        )
        hints = [f"first {first}: {ex.get(first, '')}"] if ex else []
        if end.kind == "requests_failed":
            hints.append("a --fail-if 'failed>N' gate sets how many may fail")
        saved_to = f"; result written to {saved}" if saved else ""
        error_text(f"{what}: {fmt_failures(end.failures)}{saved_to}", "; ".join(hints) or None)
    elif end.kind == "gates_failed":
        for c in end.failed_checks:
            if "mode" in c:
                error_text(f"--fail-if {c['gate']}: failed ({gate_value(c)})")
                continue
            v = "no value" if c["value"] is None else f"{c['value']:.4g}"
            error_text(f"--fail-if {c['gate']}: failed ({c['key']} = {v})")


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


class _Progress:
    """Progress on stderr. A terminal gets Rich's live bar; anything else (a CI log) gets
    one line every PROGRESS_EVERY seconds (done, failed, rate) from a timer thread, so a
    slow run is not silent, and the run's warnings (notes, the first failure of each
    class) at the moment they happen."""

    def __init__(self, every: float | None = None):
        import os

        self.p = None
        self.task = None
        self.label = "bench"
        self.every = every or float(os.environ.get("LLMCTL_BENCH_PROGRESS_S") or PROGRESS_EVERY)
        self.said: set[str] = set()  # notes already shown (not repeated at the end)
        self.classes: set[str] = set()
        self.state = {"phase": None, "done": 0, "failed": 0, "total": None, "t0": 0.0}
        self._stop = None
        self._thread = None

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
        else:
            import threading

            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __call__(self, ev: dict) -> None:
        import time

        phase = ev.get("phase")
        if phase == "note":
            if self.p is None and ev["text"] not in self.said:
                self.said.add(ev["text"])
                warn(ev["text"])
            return
        if phase in ("warmup", "run"):
            label = "warm-up" if phase == "warmup" else self.label
            self.state.update(phase=label, done=0, failed=0, total=ev.get("total"),
                              t0=time.monotonic())  # fmt: skip
        elif phase == "request":
            self.state.update(done=ev["done"], failed=ev.get("failed", 0))
            rec = ev.get("rec")
            cls = getattr(rec, "error_class", None) if rec is not None else None
            if self.p is None and cls and cls != "interrupted" and cls not in self.classes:
                self.classes.add(cls)
                warn(f"{self.state['phase']}: a request failed ({cls}): {rec.error}")
        if self.p is None:
            return
        if phase in ("warmup", "run"):
            if self.task is not None:
                self.p.remove_task(self.task)
            self.task = self.p.add_task(self.state["phase"], total=ev.get("total"), status="")
        elif phase == "request" and self.task is not None:
            status = f"failed {ev['failed']}" if ev.get("failed") else ""
            self.p.update(self.task, completed=ev["done"], status=status)

    def line(self) -> str | None:
        """The plain progress line, or None before the first phase starts."""
        import time

        st = self.state
        if st["phase"] is None:
            return None
        took = time.monotonic() - st["t0"]
        of = f"/{st['total']}" if st["total"] else ""
        rate = st["done"] / took if took > 0 else 0.0
        return (
            f"{st['phase']}: {st['done']}{of} done, {st['failed']} failed, "
            f"{rate:.1f} req/s, {took:.0f} s"
        )

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            text = self.line()
            if text is not None:
                import sys

                sys.stderr.write(text + "\n")
                sys.stderr.flush()

    def __exit__(self, *exc):
        if self.p is not None:
            self.p.stop()
        if self._stop is not None:
            self._stop.set()
            self._thread.join(timeout=1)
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
