"""`llmctl doctor`, `plan`, `pull`, `pack`, `unpack`: the model, the machine, the memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmdeploy_cli.cli.output import emit_json, info, out, warn
from llmdeploy_cli.errors import ExitCode

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
ProfileArg = Annotated[Path, typer.Argument(help="Profile file.")]


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.command("plan")(plan)
    app.command("pull")(pull)
    app.command("pack")(pack)
    app.command("unpack")(unpack)


_MARK = {"pass": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def doctor(
    file: ProfileArg,
    json_: JsonOpt = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash the model files (manifest or HF cache).")
    ] = False,
) -> int:
    """Check everything a profile needs before serving: model files, offline variables,
    engine and version, GPU and free memory, port. No network. Exit 3 on any failure."""
    from llmdeploy_cli.models.doctor import run_doctor

    report = run_doctor(file, verify=verify)
    if json_:
        emit_json(report.as_dict())
    else:
        for c in report.checks:
            out(f"{_MARK.get(c.level, c.level)}  {c.check:<36} {c.message}")
            if c.fix and c.level in ("fail", "warn"):
                out(f"      {'':<36} fix: {c.fix}")
        d = report.as_dict()["counts"]
        summary = ", ".join(f"{n} {k}" for k, n in sorted(d.items()))
        info(f"{report.profile}: {summary}")
    return 0 if report.ok else int(ExitCode.PREFLIGHT)


def plan(
    file: ProfileArg,
    gpu_mem: Annotated[
        str | None,
        typer.Option("--gpu-mem", help="Memory of one GPU (80GiB, 81559MiB); default: query."),
    ] = None,
    gpus: Annotated[
        int | None, typer.Option("--gpus", min=1, help="GPUs (default: tp x pp).")
    ] = None,
    json_: JsonOpt = False,
) -> int:
    """Memory plan: weights, KV bytes per token, reserve, KV cache tokens and concurrency at
    max_model_len under the engine's own memory setting, and values that fit. Works from
    config.json alone, before the weights are downloaded. A CPU profile (or no GPU, for an
    engine that runs on CPU) gets host RAM needed against RAM available. Exit 3 when it does
    not fit, 2 when no plan can be made."""
    from llmdeploy_cli.errors import UsageError
    from llmdeploy_cli.models import facts
    from llmdeploy_cli.models.gpus import query_gpus
    from llmdeploy_cli.models.plan import plan_for
    from llmdeploy_cli.models.units import fmt_bytes, parse_size
    from llmdeploy_cli.resolve import resolve

    r = resolve(file)
    if gpu_mem:
        mem = parse_size(gpu_mem)
        source = "--gpu-mem"
    elif r.profile.resources.device == "cpu":
        return _host_plan(r.profile, json_)
    else:
        found, why = query_gpus()
        if not found:
            if facts.runs_on_cpu(r.backend):
                return _host_plan(r.profile, json_)
            raise UsageError(
                f"no GPU to plan for ({why}), and {r.profile.backend} does not run on CPU",
                hint="give the card's memory: --gpu-mem 80GiB",
            )
        mem, source = found[0].total_bytes, f"{found[0].name} (queried)"
        gpus = gpus or None
    mp = plan_for(r.profile, mem, gpus, engine_version=r.plan.engine_version)
    if json_:
        emit_json({"name": r.profile.name, "gpu_mem_source": source, **mp.as_dict()})
        return 0 if mp.fits else int(ExitCode.PREFLIGHT)
    for w in mp.warnings:
        warn(w)
    tp = mp.tensor_parallel
    out(f"engine          {mp.engine} {mp.engine_version or ''}".rstrip())
    out(f"GPU             {fmt_bytes(mp.gpu_mem_bytes)} x {mp.gpus}  ({source})")
    out(
        f"weights         {fmt_bytes(mp.weights_bytes)} ({mp.weights_source})"
        + (f", {fmt_bytes(mp.weights_per_gpu)} per GPU" if tp > 1 else "")
    )
    out(
        f"KV per token    {mp.kv_bytes_per_token:,.0f} B per GPU "
        f"({mp.kv_bytes_per_token_total:,.0f} B whole model, kv dtype {mp.kv_dtype})"
    )
    res = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in mp.reserve.items() if v)
    out(f"reserve         {res or 'none'}")
    out(f"budget          {fmt_bytes(mp.budget_bytes)}: {mp.budget_rule}")
    out(f"KV cache        {fmt_bytes(mp.kv_cache_bytes)} = {mp.kv_cache_tokens:,} tokens")
    out(f"concurrency     {mp.concurrency:g} requests of max_model_len {mp.max_model_len:,}")
    out(f"fits            {'yes' if mp.fits else 'NO'}")
    for s in mp.suggestions:
        out(f"suggest         {s['key']}: {s['value']}  ({s['why']})")
    return 0 if mp.fits else int(ExitCode.PREFLIGHT)


def _host_plan(profile, json_: bool) -> int:
    """The CPU plan: host RAM needed (weights, KV or a batch's activations, the engine's base
    process) against RAM available."""
    from llmdeploy_cli.models.plan import host_plan_for
    from llmdeploy_cli.models.units import fmt_bytes

    hp = host_plan_for(profile)
    code = 0 if hp.fits is not False else int(ExitCode.PREFLIGHT)
    if json_:
        emit_json({"name": profile.name, **hp.as_dict()})
        return code
    for w in hp.warnings:
        warn(w)
    out(f"engine          {hp.engine} on CPU ({hp.task})")
    out(f"weights         {fmt_bytes(hp.weights_bytes)} ({hp.weights_source})")
    if hp.task == "chat":
        out(
            f"KV cache        {fmt_bytes(hp.kv_bytes)} = max_model_len {hp.max_model_len:,} "
            f"x max_num_seqs {hp.max_num_seqs}"
        )
    else:
        out(
            f"activations     {fmt_bytes(hp.activations_bytes)}: a batch of {hp.max_num_seqs} "
            f"x {hp.max_model_len} tokens (no KV cache)"
        )
    out(f"base process    {fmt_bytes(hp.base_bytes)} ({hp.base_source})")
    out(f"host RAM        needs {fmt_bytes(hp.needs_bytes)}: {hp.rule}")
    avail = fmt_bytes(hp.available_bytes) if hp.available_bytes is not None else "unknown"
    out(f"RAM available   {avail}")
    out(f"fits            {'unknown' if hp.fits is None else 'yes' if hp.fits else 'NO'}")
    return code


def pull(
    file: ProfileArg,
    config_only: Annotated[
        bool,
        typer.Option("--config-only", help="Only config.json and the index: enough for plan."),
    ] = False,
    json_: JsonOpt = False,
) -> int:
    """Download the profile's model (Hugging Face, honouring HF_ENDPOINT / hub.endpoint, or
    ModelScope when hub.source says so). Resumes an interrupted download."""
    from llmdeploy_cli.models.transfer import pull_model
    from llmdeploy_cli.profile import load_profile

    profile = load_profile(file)
    path = pull_model(profile, progress=info, config_only=config_only)
    if json_:
        emit_json({"name": profile.name, "source": profile.model.source, "path": str(path)})
    else:
        out(str(path))
    return 0


def pack(
    file: ProfileArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Archive to write (.tar).")],
    json_: JsonOpt = False,
) -> int:
    """Bundle the model folder, the profile and a sha256 manifest into one tar for an
    air-gapped machine."""
    from llmdeploy_cli.models.transfer import pack_model
    from llmdeploy_cli.profile import load_profile

    profile = load_profile(file)
    result = pack_model(profile, output, progress=info)
    if json_:
        emit_json(result)
    else:
        out(f"{output}  ({result['files']} files, {result['bytes']:,} bytes)")
    return 0


def unpack(
    archive: Annotated[Path, typer.Argument(help="Archive written by llmctl pack.")],
    to: Annotated[Path, typer.Option("--to", help="Directory to unpack into.")],
    json_: JsonOpt = False,
) -> int:
    """Unpack a `llmctl pack` archive: verify every hash, refuse unsafe paths, write the
    model and a profile that points at it (offline: true)."""
    from llmdeploy_cli.models.transfer import unpack_model

    result = unpack_model(archive, to, progress=info)
    if json_:
        emit_json(result)
    else:
        out(result["profile"])
    return 0


__all__ = ["register"]
