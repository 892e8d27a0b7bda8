"""Does a baseline gate flap? Identical back-to-back bench runs, gated against each other.

Runs `--pairs` pairs of identical `llmctl bench` runs against one server (each pair: a
baseline, then a candidate, saved under `--out`), then judges every pair with the gate
(`--gate`, default `p99_ttft_ms>+10%`) three ways: as two numbers, on a one-sided 95 %
bootstrap interval, and on the 99 % interval llmctl ships (bench/noise.py). Identical runs
should not fail it. Then, to show what the shipped gate still catches, the candidate's
recorded latencies of the gated metric are multiplied by each `--factors` value and the
pairs judged again at 99 %.

    .venv/bin/python benchmarks/gate_noise.py --url URL --model M --pairs 10 \
        --out pairs-100 -- -n 100 -c 1 --output-len 16

Everything after `--` goes to `llmctl bench` unchanged (`--repeat 3`, `-n 1000`, ...).
`--analyse-only` judges the pairs already saved in `--out` without sending anything.
Prints one table on stdout (a JSON document with `--json`), progress on stderr.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LLMCTL = Path(sys.executable).parent / "llmctl"

from llmdeploy_cli.bench import compare, noise  # noqa: E402
from llmdeploy_cli.bench.gate import OPS, lookup  # noqa: E402
from llmdeploy_cli.bench.metrics import result_keys  # noqa: E402


def run_pairs(args, extra: list[str]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.pairs):
        for side in ("base", "cand"):
            path = args.out / f"pair{i:02d}-{side}.json"
            cmd = [str(LLMCTL), "bench", "--url", args.url, "--model", args.model, *extra,
                   "--save-result", str(path), "--json"]  # fmt: skip
            p = subprocess.run(cmd, capture_output=True, text=True)
            print(f"pair {i} {side}: exit {p.returncode}", file=sys.stderr, flush=True)
            if not path.exists():
                raise SystemExit(f"llmctl bench wrote no result: {p.stderr[-500:]}")


def scaled(result: dict, metric: str, factor: float) -> dict:
    """`result` with every recorded `metric` latency (the samples and the figures made from
    them) multiplied by `factor`: a regression of that size, on the same noise."""
    out = copy.deepcopy(result)
    for k, v in result.items():
        if k.endswith(f"_{metric}_ms") and isinstance(v, (int, float)):
            out[k] = v * factor
    for run in out["llmctl"]["samples"]["runs"]:
        run[f"{metric}_ms"] = [v * factor for v in run[f"{metric}_ms"]]
    return out


def judge(gate, base: dict, cand: dict, confidence: float) -> bool:
    """Whether the gate fails the candidate, on the bootstrap interval at `confidence`."""
    shipped, noise.CONFIDENCE = noise.CONFIDENCE, confidence
    try:
        return gate.detail(base, cand)["failed"]
    finally:
        noise.CONFIDENCE = shipped


def point(gate, base: dict, cand: dict) -> bool:
    """Whether the gate fails the candidate when the two figures are compared as numbers."""
    b, c = lookup(base, gate.key), lookup(cand, gate.key)
    got = (c - b) if gate.mode == "delta" else 100.0 * (c - b) / b
    return bool(OPS[gate.op](got, gate.limit))


def analyse(args) -> dict:
    gate = compare.parse_compare_gate(args.gate, result_keys())
    stat = noise.statistic(gate.key)
    if gate.mode == "value" or stat is None:
        raise SystemExit(f"--gate {args.gate!r}: give a change gate on a latency statistic")
    metric = stat[0]
    pairs = []
    for base_path in sorted(args.out.glob("pair*-base.json")):
        cand_path = base_path.with_name(base_path.name.replace("-base", "-cand"))
        if cand_path.exists():
            pairs.append(tuple(json.loads(p.read_text()) for p in (base_path, cand_path)))
    if not pairs:
        raise SystemExit(f"no pairs in {args.out}")
    factors = [float(x) for x in args.factors.split(",") if x]
    return {
        "gate": args.gate,
        "metric": metric,
        "pairs": len(pairs),
        "failed_as_two_numbers": sum(point(gate, b, c) for b, c in pairs),
        "failed_95": sum(judge(gate, b, c, 0.95) for b, c in pairs),
        "failed_99": sum(judge(gate, b, c, 0.99) for b, c in pairs),
        "caught_99": {
            f"x{f:g}": sum(judge(gate, b, scaled(c, metric, f), 0.99) for b, c in pairs)
            for f in factors
        },
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--model")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True, help="where the pairs are saved")
    ap.add_argument("--gate", default="p99_ttft_ms>+10%")
    ap.add_argument("--factors", default="1.1,1.25,1.5,2")
    ap.add_argument("--analyse-only", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(own)
    if not args.analyse_only:
        if not (args.url and args.model):
            ap.error("--url and --model are needed to run the pairs (or --analyse-only)")
        run_pairs(args, extra)
    doc = analyse(args)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    n = doc["pairs"]
    print(f"gate {doc['gate']}, {n} pairs of identical runs ({args.out})")
    print(f"failed as two numbers: {doc['failed_as_two_numbers']}")
    print(f"failed, 95 % interval: {doc['failed_95']}")
    print(f"failed, 99 % interval (shipped): {doc['failed_99']}")
    for f, k in doc["caught_99"].items():
        print(f"candidate's {doc['metric']} {f}: caught {k} of {n} at 99 %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
