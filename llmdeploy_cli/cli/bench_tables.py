"""The text `llmctl bench` prints: a run's summary (chat or embeddings), a sweep's table,
and `bench compare`'s table. Pure functions of result documents, no I/O."""

from __future__ import annotations

import math
from pathlib import Path


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def fmt_failures(fails: dict) -> str:
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
        row("  failures by class:", fmt_failures(x["failures"]))
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


def summary_embedding(r: dict) -> str:
    """An embeddings run as a text table."""
    x = r["llmctl"]
    emb = x["embedding"]
    lines = [" Embeddings Benchmark Result ".center(60, "=")]

    def row(label, value):
        lines.append(f"{label:<44} {value}")

    row("Successful requests:", r["completed"])
    row("Failed requests:", r["failed"])
    if x["failures"]:
        row("  failures by class:", fmt_failures(x["failures"]))
    row("Inputs per request (batch size):", emb["batch_size"])
    if r["max_concurrency"] is not None:
        row("Maximum request concurrency:", r["max_concurrency"])
    if r["request_rate"] != "inf":
        row("Request rate configured (RPS):", _fmt(r["request_rate"]))
    row("Benchmark duration (s):", _fmt(r["duration"]))
    src = ", ".join(f"{k} {v}" for k, v in x["prompt_token_source"].items()) or "-"
    row("Total input tokens:", f"{r['total_input_tokens']}  (from {src})")
    row("Request throughput (req/s):", _fmt(r["request_throughput"]))
    row("Input throughput (inputs/s):", _fmt(emb["input_throughput"]))
    row("Token throughput (tok/s):", _fmt(r["total_token_throughput"]))
    lines.append(" End-to-end Latency ".center(60, "-"))
    row("Mean E2EL (ms):", _fmt(r["mean_e2el_ms"]))
    row("Median E2EL (ms):", _fmt(r["median_e2el_ms"]))
    for p in (90, 95, 99):
        row(f"P{p} E2EL (ms):", _fmt(r.get(f"p{p}_e2el_ms")))
    lines.append(" llmctl ".center(60, "-"))
    sl = x["send_lag"]
    row(
        "Send lag median / max (ms):",
        f"{_fmt(sl.get('median_send_lag_ms'))} / {_fmt(sl.get('max_send_lag_ms'))}",
    )
    for g in x.get("gates", []):
        row(f"--fail-if {g['gate']}:", "FAILED" if g["failed"] else "ok")
    lines.append("=" * 60)
    return "\n".join(lines)


def sweep_table(doc: dict) -> str:
    """A sweep: one row per point."""
    param = doc["sweep"]["parameter"]
    pts = doc["points"]
    embedding = bool(pts) and pts[0]["endpoint_type"] == "openai-embeddings"
    if embedding:
        cols = [
            ("req/s", "request_throughput"),
            ("inputs/s", "llmctl.embedding.input_throughput"),
            ("tok/s", "total_token_throughput"),
            ("E2E p50", "median_e2el_ms"),
            ("E2E p90", "p90_e2el_ms"),
            ("E2E p99", "p99_e2el_ms"),
        ]
    else:
        cols = [
            ("req/s", "request_throughput"),
            ("out tok/s", "output_throughput"),
            ("TTFT p50", "median_ttft_ms"),
            ("TTFT p99", "p99_ttft_ms"),
            ("TPOT p50", "median_tpot_ms"),
            ("ITL p99", "p99_itl_ms"),
            ("E2E p50", "median_e2el_ms"),
            ("E2E p99", "p99_e2el_ms"),
        ]
    cols.append(("lag max", "llmctl.send_lag.max_send_lag_ms"))
    from llmdeploy_cli.bench.gate import lookup

    head = ["concurrency" if param == "concurrency" else "rate", "ok", "failed"]
    head += [c for c, _ in cols]
    body = []
    for r in pts:
        v = r["max_concurrency"] if param == "concurrency" else r["request_rate"]
        cells = [str(v), str(r["completed"]), str(r["failed"])]
        cells += [_fmt(lookup(r, key)) for _, key in cols]
        gates = r["llmctl"].get("gates", [])
        if r["failed"]:
            total = r["completed"] + r["failed"]
            cells.append(f"{r['failed']}/{total} FAILED ({fmt_failures(r['llmctl']['failures'])})")
        if any(g["failed"] for g in gates):
            cells.append("gate FAILED")
        body.append(cells)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    title = f" Sweep over {param} ({'embeddings' if embedding else 'chat'}) "
    lines = [title.center(sum(widths) + 2 * len(widths), "=")]
    lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for b in body:
        extra = b[len(head) :]
        row = "  ".join(c.rjust(w) for c, w in zip(b, widths, strict=False))
        lines.append(row + ("  " + " ".join(extra) if extra else ""))
    lines.append("latencies in ms (p50 = median); lag max: the client's worst send lag")
    return "\n".join(lines)


def gate_where(c: dict) -> str:
    where = Path(c["file"]).name
    return f"{where} {c['point']}: " if c["point"] else f"{where}: "


def gate_value(c: dict) -> str:
    v = c["value"]
    if v is None:
        return f"{c['key']} has no value on one side"
    what = {"pct": "change", "delta": "change", "value": "value"}[c["mode"]]
    unit = "%" if c["mode"] == "pct" else ""
    sign = "+" if c["mode"] != "value" and v >= 0 else ""
    text = f"{c['key']} {what} {sign}{v:.4g}{unit}"
    iv = c.get("interval")
    if iv:
        from llmdeploy_cli.bench.noise import CONFIDENCE

        text += f", {CONFIDENCE:.0%} interval {iv[0]:+.3g}{unit} to {iv[1]:+.3g}{unit}"
        if c.get("needed") and min(c.get("samples") or [0]) < c["needed"]:
            text += f" ({c['tail']} requests beyond it; {c['needed']} make it narrow)"
    elif c.get("no_samples"):
        text += " (no per-request samples: two numbers compared)"
    return text


def compare_table(files: list, sections: list[dict]) -> str:
    """Rows: headline keys; columns: the files (the first is the baseline)."""
    names = [f.name for f in files]
    lines = []
    for sec in sections:
        cells = []
        for row in sec["rows"]:
            line = [row["key"]]
            for i, v in enumerate(row["values"]):
                text = _fmt(v)
                if i > 0 and v is not None:
                    text += _change(row["delta"][i], row["delta_pct"][i], v)
                line.append(text)
            cells.append(line)
        head = ["metric", *(f"{n} (baseline)" if i == 0 else n for i, n in enumerate(names))]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
        title = f" {sec['label']} " if sec["label"] else " bench compare "
        lines.append(title.center(sum(widths) + 2 * len(widths), "="))
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
        for c in cells:
            lines.append("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))
        lines.append("")
    lines.append("changes are against the baseline: absolute, and in percent")
    return "\n".join(lines)


def _change(d, pct, value) -> str:
    if d is None:
        return " (no baseline)"
    if isinstance(value, int) and not isinstance(value, bool):
        return f" ({d:+d})" if isinstance(d, int) else f" ({d:+.2f})"
    p = "" if pct is None else (f", {pct:+.1f}%" if abs(pct) != math.inf else ", new")
    return f" ({d:+.2f}{p})"


def _sources(x: dict) -> str:
    src = x.get("token_source") or {}
    return ", ".join(f"{k} {v}" for k, v in src.items()) or "-"


__all__ = [
    "compare_table",
    "fmt_failures",
    "gate_value",
    "gate_where",
    "summary",
    "summary_embedding",
    "sweep_table",
]
