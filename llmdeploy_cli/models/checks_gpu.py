"""The GPU check: GPUs visible (models/gpus.py), enough of them, a card the engine runs the
profile's dtype and quantization on (the backend's `card_limits`), and the memory plan
against what is free, by the backend's memory rule (doctor and preflight).

Only engines and devices that need an NVIDIA card are checked: `resources.device: cpu`, and
a backend option that puts the engine on another accelerator (the backend's
`non_nvidia_devices`, e.g. LMDeploy's options.device: ascend), skip it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.capabilities import CardLimits
from llmdeploy_cli.errors import Problem
from llmdeploy_cli.models import facts

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Plan
    from llmdeploy_cli.profile import Profile


def off_nvidia(profile: Profile, backend) -> str | None:
    """Why the profile's engine needs no NVIDIA card (None: it needs one)."""
    if profile.resources.device == "cpu":
        return "resources.device: cpu"
    declared = getattr(backend, "non_nvidia_devices", None)
    if declared:
        key, values = declared
        node = profile.model_dump()
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node in values:
            return f"{key}: {node} (not an NVIDIA device)"
    return None


def check_gpu(
    profile: Profile, model_dir: Path | None, plan: Plan, gpu_query=None, *, model_info=None
) -> list:
    """`model_info`: model_dir's ModelInfo when doctor has inspected it (not read again)."""
    from llmdeploy_cli.models.gpus import query_gpus, visible_gpus
    from llmdeploy_cli.models.units import fmt_bytes

    backend = facts.backend_of(profile)
    why_not = off_nvidia(profile, backend)
    if why_not:
        return [Problem("gpu", "skip", why_not)]
    gpus, why = (gpu_query or query_gpus)()
    if not gpus:
        if facts.runs_on_cpu(backend):
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
            f"{len(devices)} GPU(s): {g.name}, {fmt_bytes(g.total_bytes)}, compute capability "
            f"{g.capability}; driver {g.driver}, CUDA {g.cuda}",
            data={"gpus": [vars(d) for d in devices]},
        )
    ]
    r = profile.resources
    need_gpus = r.tensor_parallel * r.pipeline_parallel
    used = devices[: max(need_gpus, 1)]
    out += check_capability(profile, backend, used, model_dir, model_info)
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
    out.append(check_memory(profile, model_dir, plan, devices, used, model_info))
    return out


def check_capability(
    profile: Profile, backend, used: list, model_dir: Path | None, model_info=None
) -> list:
    """The oldest card in use against the engine's minimum for the dtype and quantization."""
    limits = getattr(backend, "card_limits", None)
    cards = [d for d in used if getattr(d, "compute_cap", None)]
    if not isinstance(limits, CardLimits) or not cards:
        return []
    dtype = profile.model.dtype if profile.model.dtype not in (None, "auto") else None
    quant = profile.model.quantization or _checkpoint_quant(model_dir, model_info)
    oldest = min(cards, key=lambda d: d.compute_cap)
    for need, what in limits.needs(dtype=dtype, quantization=quant):
        if oldest.compute_cap < need:
            fix = (
                "use model.dtype: float16 (the card has no bfloat16)"
                if what.startswith("dtype")
                else "serve a checkpoint quantized for this card, or use a newer GPU"
            )
            return [
                Problem(
                    "gpu.capability",
                    "fail",
                    f"{oldest.name} has compute capability {oldest.capability}; "
                    f"{profile.backend} needs {need[0]}.{need[1]} for {what} "
                    f"({limits.source})",
                    fix=fix,
                    data={"compute_cap": list(oldest.compute_cap), "needs": list(need)},
                )
            ]
    return [
        Problem(
            "gpu.capability",
            "pass",
            f"compute capability {oldest.capability} runs "
            + (", ".join(x for x in (dtype and f"dtype {dtype}", quant) if x) or "this model"),
        )
    ]


def _checkpoint_quant(model_dir: Path | None, model_info=None) -> str | None:
    """The checkpoint's quant_method (config.json quantization_config), lower-cased."""
    if model_dir is None or not (model_dir / "config.json").is_file():
        return None
    from llmdeploy_cli.models.inspect import model_config, text_config

    cfg = model_config(model_dir, model_info)
    q = (cfg or {}).get("quantization_config") or text_config(cfg or {}).get("quantization_config")
    method = q.get("quant_method") if isinstance(q, dict) else None
    return str(method).lower() if method else None


def check_memory(
    profile: Profile, model_dir: Path, plan: Plan, devices: list, used: list, model_info=None
):
    """The plan on this card, by the engine's rule: an engine that sizes its cache from the
    FREE memory (LMDeploy) is planned on what is free; one that takes a fraction of the
    TOTAL (vLLM, SGLang) is planned on the total and must find that fraction free."""
    from llmdeploy_cli.models.plan import memory_rule, plan_for
    from llmdeploy_cli.models.remedies import remedies_for
    from llmdeploy_cli.models.units import fmt_bytes

    free = min(d.free_bytes for d in used)
    try:
        rule = memory_rule(profile.backend)
        size = free if rule.sizes_from_free else devices[0].total_bytes
        mp = plan_for(
            profile,
            size,
            len(devices),
            engine_version=plan.engine_version,
            model_dir=model_dir,
            model_info=model_info,
        )
    except Exception as e:  # noqa: BLE001 - a plan that cannot be made is a skip, not a crash
        return Problem("gpu.memory", "skip", f"no memory plan: {e}")
    if rule.sizes_from_free:  # the cache is sized to what is left: weights + runtime first
        need = mp.weights_per_gpu + sum(mp.reserve.values())
    else:
        need = rule.gpu_need(mp)
    data = {"kv_cache_tokens": mp.kv_cache_tokens, "needs_bytes": need, "free_bytes": free}
    basis = "free" if rule.sizes_from_free else "total"
    if not mp.fits:
        tips = "; ".join(f"{s['key']}: {s['value']}" for s in mp.suggestions[:3])
        return Problem(
            "gpu.memory",
            "fail",
            f"the plan does not fit ({fmt_bytes(size)} {basis}): {mp.kv_cache_tokens} KV "
            f"tokens for max_model_len {mp.max_model_len} (weights "
            f"{fmt_bytes(mp.weights_per_gpu)} per GPU)",
            fix=tips or "see llmctl plan PROFILE",
            data=data,
        )
    if free < need:
        fraction = remedies_for(profile.backend).memory_fraction
        fix = "stop what else uses the GPU (nvidia-smi lists it)"
        if fraction and not rule.sizes_from_free:
            fix += f", or lower {fraction.key}"
        return Problem(
            "gpu.memory",
            "fail",
            f"{fmt_bytes(free)} free on the GPU, the engine will take {fmt_bytes(need)} "
            f"({mp.budget_rule})",
            fix=fix,
            data=data,
        )
    return Problem(
        "gpu.memory",
        "pass",
        f"{fmt_bytes(free)} free, needs {fmt_bytes(need)}; about {mp.kv_cache_tokens:,} "
        f"KV tokens ({mp.concurrency:g} x max_model_len {mp.max_model_len}; "
        f"{mp.budget_rule})",
        data=data,
    )
