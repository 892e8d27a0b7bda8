"""The GPU check: GPUs visible (models/gpus.py), enough of them, and the memory plan against
what is free, by the backend's memory rule (doctor and preflight)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import Problem
from llmdeploy_cli.models import facts

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Plan
    from llmdeploy_cli.profile import Profile


def check_gpu(profile: Profile, model_dir: Path | None, plan: Plan, gpu_query=None) -> list:
    from llmdeploy_cli.models.gpus import query_gpus, visible_gpus
    from llmdeploy_cli.models.plan import memory_rule, plan_for
    from llmdeploy_cli.models.units import fmt_bytes

    if profile.resources.device == "cpu":
        return [Problem("gpu", "skip", "resources.device: cpu")]
    gpus, why = (gpu_query or query_gpus)()
    if not gpus:
        if facts.runs_on_cpu(facts.backend_of(profile)):
            return [
                Problem("gpu", "skip", f"no NVIDIA GPU ({why}); {profile.backend} can run on CPU")
            ]
        return [
            Problem(
                "gpu",
                "fail",
                f"no NVIDIA GPU found: {why}",
                fix="run on a machine with a GPU and its driver (nvidia-smi must work)",
            )
        ]
    devices = visible_gpus(profile, gpus)
    g = devices[0]
    out = [
        Problem(
            "gpu",
            "pass",
            f"{len(devices)} GPU(s): {g.name}, {fmt_bytes(g.total_bytes)}; driver {g.driver}, "
            f"CUDA {g.cuda}",
            data={"gpus": [vars(d) for d in devices]},
        )
    ]
    r = profile.resources
    need_gpus = r.tensor_parallel * r.pipeline_parallel
    if len(devices) < need_gpus:
        out.append(
            Problem(
                "gpu.count",
                "fail",
                f"tensor_parallel x pipeline_parallel = {need_gpus}, but {len(devices)} GPU(s) "
                "are visible",
                fix="lower resources.tensor_parallel, or set resources.visible_devices",
            )
        )
    if model_dir is None:
        out.append(Problem("gpu.memory", "skip", "the model is not on disk: no memory plan"))
        return out
    try:
        mp = plan_for(
            profile,
            g.total_bytes,
            len(devices),
            engine_version=plan.engine_version,
            model_dir=model_dir,
        )
    except Exception as e:  # noqa: BLE001 - a plan that cannot be made is a skip, not a crash
        out.append(Problem("gpu.memory", "skip", f"no memory plan: {e}"))
        return out
    need = memory_rule(profile.backend).gpu_need(mp)
    free = min(d.free_bytes for d in devices[: max(need_gpus, 1)])
    data = {"kv_cache_tokens": mp.kv_cache_tokens, "needs_bytes": need, "free_bytes": free}
    if not mp.fits:
        tips = "; ".join(f"{s['key']}: {s['value']}" for s in mp.suggestions[:3])
        out.append(
            Problem(
                "gpu.memory",
                "fail",
                f"the plan does not fit: {mp.kv_cache_tokens} KV tokens for max_model_len "
                f"{mp.max_model_len} (weights {fmt_bytes(mp.weights_per_gpu)} per GPU)",
                fix=tips or "see llmctl plan PROFILE",
                data=data,
            )
        )
    elif free < need:
        out.append(
            Problem(
                "gpu.memory",
                "fail",
                f"{fmt_bytes(free)} free on the GPU, the engine will take {fmt_bytes(need)} "
                f"({mp.budget_rule})",
                fix="stop what else uses the GPU (nvidia-smi lists it), or lower "
                "resources.gpu_memory_utilization",
                data=data,
            )
        )
    else:
        out.append(
            Problem(
                "gpu.memory",
                "pass",
                f"{fmt_bytes(free)} free, needs {fmt_bytes(need)}; about {mp.kv_cache_tokens:,} "
                f"KV tokens ({mp.concurrency:g} x max_model_len {mp.max_model_len})",
                data=data,
            )
        )
    return out
