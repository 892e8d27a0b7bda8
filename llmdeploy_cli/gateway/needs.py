"""What each model needs on which device, and what each device offers: the inputs of the
fit. The one place the gateway asks the memory plan (models/plan.py).

A need is bytes per device: `gpu:N` for a GPU index, `host` for host RAM. An engine on the
CPU counts its weights, the KV cache its context takes and its base process memory
against host RAM; an engine on GPUs counts what the plan says it takes on each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOST = "host"
GiB = 1024**3
MiB = 1024**2


@dataclass
class Need:
    devices: dict[str, int] = field(default_factory=dict)
    source: str = "plan"
    note: str | None = None

    @property
    def total(self) -> int:
        return sum(self.devices.values())


def gpu(i: int) -> str:
    return f"gpu:{i}"


def devices(memory, gpus_found: list[int] | None = None) -> tuple[dict[str, int], list[str]]:
    """Device budgets from the gateway file's `memory` section: explicit sizes as given,
    `auto` as each device's total less `reserve`. Returns (budgets, notes)."""
    notes: list[str] = []
    out: dict[str, int] = {}
    if memory.host_ram == "auto":
        import psutil

        out[HOST] = max(0, int(psutil.virtual_memory().total) - memory.reserve)
    else:
        out[HOST] = int(memory.host_ram)
    if memory.gpus == "auto":
        if gpus_found is None:
            from llmdeploy_cli.models.gpus import query_gpus

            found, why = query_gpus()
            if why:
                notes.append(f"no GPU budget: {why}")
            for g in found:
                out[gpu(g.index)] = max(0, g.total_bytes - memory.reserve)
        else:
            for i, total in enumerate(gpus_found):
                out[gpu(i)] = max(0, total - memory.reserve)
    else:
        for i, size in enumerate(memory.gpus):
            out[gpu(i)] = int(size)
    return out, notes


def on_cpu(profile, budgets: dict[str, int]) -> bool:
    if profile.resources.device == "cpu":
        return True
    return not any(d.startswith("gpu:") for d in budgets)


def gpu_indices(profile) -> list[int]:
    r = profile.resources
    want = max(1, r.tensor_parallel * r.pipeline_parallel)
    vis = r.visible_devices
    if isinstance(vis, str):
        vis = [int(x) for x in vis.split(",") if x.strip().isdigit()]
    if vis:
        return list(vis)[:want]
    return list(range(want))


def need_of(model, budgets: dict[str, int]) -> Need:
    """The planned need of one gateway model (its override, else the memory plan)."""
    profile = model.profile
    cpu = on_cpu(profile, budgets)
    if model.need_override is not None:
        if cpu:
            return Need({HOST: model.need_override}, "gateway file")
        idx = gpu_indices(profile)
        return Need({gpu(i): model.need_override // len(idx) for i in idx}, "gateway file")
    if not model.evictable:
        return Need({}, "not counted", "its engine manages its own memory")
    from llmdeploy_cli.errors import LlmctlError
    from llmdeploy_cli.models.plan import memory_need

    idx = [] if cpu else gpu_indices(profile)
    card = min((budgets.get(gpu(i), 0) for i in idx), default=0) if idx else None
    try:
        n = memory_need(
            profile,
            gpu_mem_bytes=card or None,
            engine_version=model.resolved.plan.engine_version,
        )
    except LlmctlError as e:
        return Need({}, "unknown", f"{e.message}; set models.{model.name}.need")
    if not n.on_gpu:
        return Need({HOST: n.host_bytes}, f"plan: {n.rule}")
    out = {gpu(i): n.gpu_bytes for i in idx[: max(1, n.gpus)]}
    out[HOST] = n.host_bytes  # the engine's base process lives in host RAM
    return Need(out, f"plan: {n.rule}")
