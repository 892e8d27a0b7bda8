"""`--plot FILE.png`: latency CDFs, and throughput against latency across a sweep.

matplotlib is an optional extra (`pip install 'llmdeploy-cli[plot]'`), imported only here,
only when a plot is asked for, with the non-interactive Agg backend.

Panels: one empirical CDF each for TTFT, ITL and E2E (chat), or E2E only (embeddings); one
line per sweep point. A sweep adds a panel of output (or request) throughput against the
median and p99 latency, one marker per point, labelled with the swept value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmdeploy_cli.errors import UsageError

INSTALL_HINT = "pip install 'llmdeploy-cli[plot]' (or: pip install matplotlib)"


@dataclass
class Series:
    """One run's per-request latencies in ms, and its result."""

    label: str
    result: dict
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    e2el: list[float] = field(default_factory=list)


def series(label: str, result: dict, records) -> Series:
    ok = [r for r in records if r.ok]
    return Series(
        label,
        result,
        ttft=[r.ttft * 1000 for r in ok if r.ttft is not None],
        itl=[g * 1000 for r in ok for g in r.itls],
        e2el=[r.e2el * 1000 for r in ok if r.e2el is not None],
    )


def require_matplotlib() -> None:
    """Fail before the run, in one line, when the plot cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib, which is not installed", hint=INSTALL_HINT)


def _cdf(ax, values: list[float], label: str) -> None:
    xs = sorted(values)
    n = len(xs)
    ys = [(i + 1) / n for i in range(n)]
    ax.step(xs, ys, where="post", label=label, linewidth=1.6)


def draw(path: Path, runs: list[Series], title: str, sweep: str | None = None) -> Path:
    """Write the figure to `path` (PNG, or whatever its suffix names) and return it."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    embedding = all(not s.ttft for s in runs) and any(s.e2el for s in runs)
    metrics = [("e2el", "End-to-end latency")]
    if not embedding:
        metrics = [("ttft", "Time to first token"), ("itl", "Inter-token latency"), *metrics]
    panels = len(metrics) + (1 if sweep else 0)
    cols = panels if panels <= 3 else 2
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.4 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (key, name) in zip(flat, metrics, strict=False):
        drawn = False
        for s in runs:
            values = getattr(s, key)
            if values:
                _cdf(ax, values, legend_label(s, len(values)))
                drawn = True
        ax.set_title(f"{name} (CDF)")
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of values ≤ x")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        for y, name in ((0.5, "p50"), (0.99, "p99")):
            ax.axhline(y, color="grey", linestyle=":", linewidth=0.8)
            ax.annotate(name, (0, y), xycoords=("axes fraction", "data"), xytext=(2, 2),
                        textcoords="offset points", fontsize=7, color="grey")  # fmt: skip
        if drawn:
            _log_if_wide(ax, [v for s in runs for v in getattr(s, key)])
            if len(runs) > 1:
                ax.legend(fontsize="small", title=sweep)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    if sweep:
        _throughput_panel(flat[len(metrics)], runs, sweep, embedding)
    for ax in flat[panels:]:
        ax.set_visible(False)
    title = failed_title(title, runs)
    fig.suptitle(title, fontsize="medium", color="red" if title.count("\n") else None)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def legend_label(s: Series, values: int) -> str:
    """A curve's name; a point with failed requests says how many (its curve holds the
    requests that completed only)."""
    base = s.label.split("=")[-1] or f"{values} values"
    failed = s.result.get("failed") or 0
    if failed:
        total = failed + (s.result.get("completed") or 0)
        base += f" ({failed}/{total} FAILED)"
    return base


def failed_title(title: str, runs: list[Series]) -> str:
    """The figure's title, with the failed requests of every point when there are any."""
    failed = sum(s.result.get("failed") or 0 for s in runs)
    if not failed:
        return title
    total = failed + sum(s.result.get("completed") or 0 for s in runs)
    return f"{title}\n{failed} of {total} requests FAILED (not in the curves)"


def _log_if_wide(ax, values: list[float]) -> None:
    lo = min(v for v in values if v > 0) if any(v > 0 for v in values) else 0
    if lo > 0 and max(values) / lo > 100:
        ax.set_xscale("log")


def _throughput_panel(ax, runs: list[Series], sweep: str, embedding: bool) -> None:
    key = "request_throughput" if embedding else "output_throughput"
    lat = "e2el" if embedding else "ttft"
    unit = "requests/s" if embedding else "output tokens/s"
    for stat, marker in (("median", "o"), ("p99", "s")):
        xs, ys, labels = [], [], []
        for s in runs:
            x, y = s.result.get(key), s.result.get(f"{stat}_{lat}_ms")
            if x is not None and y is not None:
                xs.append(x)
                ys.append(y)
                failed = s.result.get("failed") or 0
                labels.append(s.label.split("=")[-1] + (f" ({failed} failed)" if failed else ""))
        ax.plot(xs, ys, marker=marker, label=f"{stat} {lat.upper()}")
        for x, y, text in zip(xs, ys, labels, strict=True):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_title(f"Throughput vs latency ({sweep} sweep)")
    ax.set_xlabel(unit)
    ax.set_ylabel(f"{lat.upper()} (ms)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


__all__ = [
    "INSTALL_HINT",
    "Series",
    "draw",
    "failed_title",
    "legend_label",
    "require_matplotlib",
    "series",
]
