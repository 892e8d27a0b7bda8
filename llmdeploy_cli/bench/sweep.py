"""A bench as library calls: the target, the workload, one run or a sweep of runs, the
gates (absolute or against a baseline), the result document, the plot and the outcome.

`llmctl bench` parses its options into these calls and renders what they return; nothing
here prints (warnings go to a callback, progress to the runner's `progress`).

    target = resolve_target(file, url, model, api_key_env)
    workload, tok = build_workload(...)
    cfg = BenchConfig(...)                       # bench/runner.py
    sweep = run_sweep(cfg, concurrencies, rates, progress, gates=..., baseline=...)
    sweep.doc                                    # what --json prints and --save-result writes
    outcome(sweep, saved)                        # exit code and the lines that explain it

A list of concurrencies or of request rates makes a sweep: one run per value, in order,
the first one checking the endpoint and settling the output-length forcing for the rest;
a run that is interrupted or loses its server ends the sweep.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdeploy_cli.errors import ExitCode, LlmctlError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.bench.runner import BenchConfig, BenchRun

EMBEDDING_TASKS = ("embedding", "embed", "embeddings")
DEFAULT_OUTPUT_LEN = 128  # random prompts, when --output-len is not given


@dataclass(frozen=True)
class Target:
    """What a bench talks to."""

    base_url: str
    model: str | None  # None: the first model the server lists
    api_key: str | None
    tokenizer_dir: Path | None
    task: str  # chat | embedding


def resolve_target(
    file: Path | None,
    url: str | None,
    model: str | None = None,
    api_key_env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """A profile (its running server: `port: auto` takes the port it got) or a URL."""
    environ = os.environ if environ is None else environ
    if file is not None:
        from llmdeploy_cli.resolve import resolve_served

        r = resolve_served(file, environ)
        ep = r.plan.endpoint
        task = "embedding" if ep.task in EMBEDDING_TASKS else ep.task
        if task not in ("chat", "embedding"):
            raise UsageError(
                f"bench measures chat and embedding endpoints; this profile serves '{ep.task}'",
            )
        env_name = api_key_env or ep.api_key_env
        key = environ.get(env_name) if env_name else None
        if env_name and not key:
            raise UsageError(f"the API key variable {env_name} is not set")
        tok_dir = None
        for cand in (r.profile.model.tokenizer, None):
            p = local_dir(r.profile, cand)
            if p is not None:
                tok_dir = p
                break
        return Target(ep.base_url, model or ep.model, key, tok_dir, task)
    if url is None:
        raise UsageError("give a profile FILE or --url URL (one of them)")
    from llmdeploy_cli.openai_http.urls import openai_root

    url = openai_root(url)
    key = environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise UsageError(f"the API key variable {api_key_env} is not set")
    return Target(url.rstrip("/"), model, key, None, "chat")


def local_dir(profile, source: str | None) -> Path | None:
    """The local folder of `source` (relative to the profile), else of the profile's model."""
    if source is not None:
        p = Path(source).expanduser()
        if not p.is_absolute() and profile.path is not None:
            p = profile.path.parent / p
        return p if p.is_dir() else None
    p = profile.model_path()
    if p is None:
        return None
    return p if p.is_dir() else (p.parent if p.is_file() else None)


def build_workload(
    dataset: Path | None,
    tok_dir: Path | None,
    n: int | None,
    duration: float | None,
    rate: float,
    conc: int | None,
    input_len: int,
    output_len: int | None,
    ratio: float,
    seed: int,
    warn: Callable[[str], None] = lambda text: None,
):
    """(workload, tokenizer or None): a dataset file's prompts or random ones. With a
    duration and no count, enough distinct prompts for the rate (then they repeat).

    `output_len` None: random prompts ask for DEFAULT_OUTPUT_LEN tokens, a dataset's
    prompts for their own lengths (`output_len`/`max_tokens`, a ShareGPT reply's length);
    given, it wins over the file's."""
    from llmdeploy_cli.bench.workload import file_workload, load_tokenizer, random_workload

    tok = load_tokenizer(tok_dir) if tok_dir is not None else None
    if tok_dir is not None and tok is None:
        warn(f"could not load a tokenizer from {tok_dir}: using words")
    if input_len <= 0 or (output_len is not None and output_len <= 0):
        raise UsageError("--input-len and --output-len must be > 0")
    if dataset is not None:
        return file_workload(dataset, n, output_len, seed, tok), tok
    if output_len is None:
        output_len = DEFAULT_OUTPUT_LEN
    if n is None:
        est = duration * (rate if not math.isinf(rate) else 10.0 * (conc or 1))
        n_make = int(min(max(est, 16), 2048))
    else:
        n_make = n
    return random_workload(n_make, input_len, output_len, ratio, seed, tok), tok


def sweep_points(
    cfg: BenchConfig, concurrencies: list[int], rates: list[float]
) -> tuple[str | None, list[BenchConfig]]:
    """(the swept parameter or None, one config per point)."""
    if len(concurrencies) > 1 and len(rates) > 1:
        raise UsageError("sweep one setting at a time: a list for --concurrency or for "
                         "--request-rate, not both")  # fmt: skip
    if len(concurrencies) > 1:
        return "concurrency", [dataclasses.replace(cfg, concurrency=c) for c in concurrencies]
    if len(rates) > 1:
        return "request_rate", [dataclasses.replace(cfg, request_rate=r) for r in rates]
    return None, [cfg]


def point_label(sweep: str | None, cfg) -> str:
    if sweep == "concurrency":
        return f"concurrency={cfg.concurrency}"
    if sweep == "request_rate":
        r = cfg.request_rate
        return "request_rate=inf" if math.isinf(r) else f"request_rate={r:g}"
    return ""


@dataclass
class Sweep:
    """One run or a sweep, measured and gated."""

    sweep: str | None  # the swept parameter, None for one run
    points: list  # BenchConfig per point asked for
    runs: list  # BenchRun per point run (fewer when one was interrupted or lost the server)
    checks: list[list[dict]] = field(default_factory=list)  # gate checks per run
    doc: dict = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        """Every run's notes, each once, in order."""
        return list(dict.fromkeys(n for run in self.runs for n in run.result["llmctl"]["notes"]))

    @property
    def all_checks(self) -> list[dict]:
        return [c for cs in self.checks for c in cs]


def run_sweep(
    cfg: BenchConfig,
    concurrencies: list[int],
    rates: list[float],
    progress: Any = None,
    *,
    gates: list | None = None,
    baseline: Any = None,
    baseline_path: Path | None = None,
    repeat: int = 1,
) -> Sweep:
    """Run every point, gate every run, assemble the result document.

    `progress(event)` is the runner's progress callback; it may have a `label` attribute,
    set to the point's label before each run. `gates`: `bench.gate` gates, or with a
    `baseline` (a loaded result file, `bench.compare.load`) compare gates, each checked
    against the baseline's point of the same label. `repeat`: each point measured that
    many times back to back and reported as one (bench/repeat.py)."""
    from llmdeploy_cli.bench.repeat import merge
    from llmdeploy_cli.bench.runner import run_bench

    if repeat < 1:
        raise UsageError("--repeat must be >= 1")
    sweep, points = sweep_points(cfg, concurrencies, rates)
    runs: list[BenchRun] = []
    first: BenchRun | None = None
    for point in points:
        label = point_label(sweep, point) or "bench"
        parts: list[BenchRun] = []
        for k in range(repeat):
            if progress is not None and hasattr(progress, "label"):
                progress.label = label + (f" (run {k + 1}/{repeat})" if repeat > 1 else "")
            if first is not None:  # the first run checked the endpoint and settled forcing
                point = dataclasses.replace(point, check=False, model=first.result["model_id"])
                if not first.result["llmctl"]["forced_output_len"]:
                    point = dataclasses.replace(point, force_output_len="off")
            parts.append(run_bench(point, progress))
            first = first or parts[0]
            if parts[-1].interrupted or parts[-1].server_lost:
                break
        runs.append(merge(point, parts))
        if runs[-1].interrupted or runs[-1].server_lost:
            break
    result = Sweep(sweep, points, runs)
    for p, run in zip(points, runs, strict=False):
        if baseline is not None:
            checks = baseline_checks(
                gates or [], baseline, baseline_path, point_label(sweep, p), run.result
            )
        elif gates:
            from llmdeploy_cli.bench.gate import evaluate

            checks = evaluate(gates, run.result)
        else:
            checks = []
        if checks:
            run.result["llmctl"]["gates"] = checks
        result.checks.append(checks)
    result.doc = runs[0].result if sweep is None else sweep_doc(sweep, points, runs)
    return result


def sweep_doc(sweep: str, points: list, runs: list) -> dict:
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


def baseline_checks(gates, base, path: Path | None, label: str, result: dict) -> list[dict]:
    """This run (or sweep point) against the baseline's point of the same label, or against
    the baseline when it is a single run. A point the baseline lacks fails its gates."""
    from llmdeploy_cli.bench import compare as cmp

    here = cmp.ResultFile(Path("this run"), None, [(label, result)])
    _, b, cand = cmp.match(base, here)[0]
    out = []
    for g in gates:
        out.append(
            {"gate": g.text, "key": g.key, "mode": g.mode, "baseline": str(path),
             **g.detail(b, cand)}
        )  # fmt: skip
    return out


def save(result: Sweep, path: Path) -> None:
    """Write the result document (atomically)."""
    import json

    from llmdeploy_cli.fsutil import atomic_write

    atomic_write(path, json.dumps(result.doc, indent=2, default=str) + "\n")


def plot(path: Path, result: Sweep) -> None:
    """Latency CDFs of every point (and a sweep's curve) to `path`."""
    from llmdeploy_cli.bench.plot import draw, series

    data = [
        series(point_label(result.sweep, p), run.result, run.records)
        for p, run in zip(result.points, result.runs, strict=False)
    ]
    r0 = result.runs[0].result
    what = "embeddings" if r0["endpoint_type"] == "openai-embeddings" else "chat"
    title = f"llmctl bench: {r0['model_id']} ({what}) at {r0['llmctl']['url']}"
    try:
        draw(path, data, title, result.sweep)
    except OSError as e:
        raise LlmctlError(f"cannot write the plot {path}: {e.strerror or e}") from None


@dataclass(frozen=True)
class Outcome:
    """How a bench ended, as data (the CLI words it). The first that applies:

    | kind            | code | when                                                     |
    |-----------------|------|----------------------------------------------------------|
    | interrupted     | 130  | Ctrl-C: what was measured is kept                        |
    | server_lost     | 5    | the server stopped answering mid-run                     |
    | all_failed      | 7    | it ran, and not one request completed                    |
    | gates_failed    | 6    | a --fail-if gate is true                                 |
    | requests_failed | 7    | it ran, N requests failed (no --fail-if names `failed`)  |
    | ok              | 0    |                                                          |

    A run that could not start raises instead: 2 usage (bad option, prompts that cannot
    fit the context the server lists), 5 unreachable, 1 the server refused the first
    request. A `--fail-if` gate on `failed` (e.g. 'failed>5') takes over deciding how
    many failures a run may have.
    """

    code: int
    kind: str
    completed: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # class -> count, every run
    failure_examples: dict[str, str] = field(default_factory=dict)  # class -> first example
    failed_checks: list[dict] = field(default_factory=list)


def _failures(runs) -> tuple[dict[str, int], dict[str, str]]:
    fails: dict[str, int] = {}
    ex: dict[str, str] = {}
    for run in runs:
        for k, v in run.result["llmctl"]["failures"].items():
            fails[k] = fails.get(k, 0) + v
        ex = {**run.result["llmctl"]["failure_examples"], **ex}
    return fails, ex


def outcome(result: Sweep) -> Outcome:
    """The first that applies (see Outcome)."""
    runs = result.runs
    completed = sum(run.result["completed"] for run in runs)
    failed = sum(run.result["failed"] for run in runs)
    counts = {"completed": completed, "failed": failed}
    if any(run.interrupted for run in runs):
        return Outcome(130, "interrupted", **counts)
    if any(run.server_lost for run in runs):
        return Outcome(int(ExitCode.UNREACHABLE), "server_lost", **counts)
    fails, ex = _failures(runs)
    code = int(ExitCode.REQUESTS_FAILED)
    if completed == 0:
        return Outcome(code, "all_failed", **counts, failures=fails, failure_examples=ex)
    bad = [c for c in result.all_checks if c["failed"]]
    if bad:
        return Outcome(int(ExitCode.ASSERTION), "gates_failed", **counts, failed_checks=bad)
    gated = any(c["key"] == "failed" for c in result.all_checks)
    if failed and not gated:
        return Outcome(code, "requests_failed", **counts, failures=fails, failure_examples=ex)
    return Outcome(0, "ok", **counts)
