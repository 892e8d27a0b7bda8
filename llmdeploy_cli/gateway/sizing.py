"""What an engine that sizes itself is told when the gateway starts it next to others.

vLLM and SGLang take a fraction of the card's total, LMDeploy a share of what is free, and
llama.cpp the layers and context it is given: left to their profile's own setting, each
would take what the setting says whatever else is resident. The gateway asks the
backend's memory rule (`MemoryRule.setting_for_budget`) for the profile overrides that keep
the engine within the need the fit counts for it and within what the GPU has free now,
and starts the engine with them. Engines without a pool (transformers, Infinity) and
models on the CPU get none. No engine is named here: the rules live in the backends.

After a stop, the next start on a GPU waits (bounded) until the GPU reports the memory of
the model it starts as free (`wait_free`): an engine's process group can be gone a moment
before the driver gives its memory back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

GPU_FREE_WAIT = 30.0  # seconds a start waits for the GPU to report a stopped engine's memory
POLL_S = 0.2


class NoSetting(Exception):
    """No setting of the engine keeps it within its budget (the fit counted too little)."""


def gpu_needs(need: dict[str, int]) -> dict[int, int]:
    """{gpu index: bytes} of a need."""
    return {int(k.split(":", 1)[1]): v for k, v in need.items() if k.startswith("gpu:")}


def query() -> list:
    """The GPUs as models/gpus.py reports them (NVML, else nvidia-smi); [] when none answers."""
    from llmdeploy_cli.models.gpus import query_gpus

    found, _why = query_gpus()
    return found


def short(need: dict[str, int], gpus: list) -> dict[int, tuple[int, int]]:
    """{gpu index: (free, needed)} for each GPU of the need that has less free than needed."""
    by_index = {g.index: g for g in gpus}
    out = {}
    for i, want in gpu_needs(need).items():
        g = by_index.get(i)
        if g is not None and g.free_bytes < want:
            out[i] = (g.free_bytes, want)
    return out


def wait_free(
    need: dict[str, int],
    timeout: float,
    gpu_query: Callable[[], list] = query,
    stop: Callable[[], bool] = lambda: False,
) -> tuple[list, dict[int, tuple[int, int]]]:
    """Poll the GPUs until each GPU of `need` has its bytes free, up to `timeout` seconds.
    Returns (the GPUs last seen, what is still short: {} when everything is free)."""
    deadline = time.monotonic() + timeout
    while True:
        gpus = gpu_query()
        missing = short(need, gpus)
        if not missing or time.monotonic() >= deadline or stop():
            return gpus, missing
        time.sleep(POLL_S)


def start_overrides(model, need: dict[str, int], gpus: list) -> dict:
    """Profile overrides (dotted keys) for starting `model` within `need` on `gpus` as
    they are now. {} on the CPU, without GPU figures, or for an engine that sizes nothing.
    Raises NoSetting when its rule finds none that holds one full request."""
    wants = gpu_needs(need)
    by_index = {g.index: g for g in gpus}
    if not wants or not model.evictable or not all(i in by_index for i in wants):
        return {}
    from llmdeploy_cli.models.plan import memory_need, memory_rule

    profile = model.profile
    rule = memory_rule(profile.backend)
    # the GPU with the least room decides (tensor-parallel engines take the same on each)
    i = min(wants, key=lambda i: min(wants[i], by_index[i].free_bytes))
    g = by_index[i]
    n = memory_need(profile, gpu_mem_bytes=g.total_bytes, engine_version=_version(model))
    got = rule.setting_for_budget(n.plan, wants[i], g.total_bytes, g.free_bytes, _layers(profile))
    if got is None:
        raise NoSetting(
            f"no {rule.sizing.value} setting keeps '{model.name}' within "
            f"{wants[i] / 2**30:.2f} GiB on gpu:{i} ({g.free_bytes / 2**30:.2f} GiB free) "
            "and holds one full request"
        )
    return got


def _version(model) -> str | None:
    try:
        return model.resolved.plan.engine_version
    except AttributeError:
        return None


def _layers(profile) -> int | None:
    """The model's layer count from its config (as the plan reads it), None if unknown."""
    from llmdeploy_cli.models.plan import inputs_for
    from llmdeploy_cli.models.shape import shape_from_config

    try:
        return shape_from_config(inputs_for(profile).config).layers or None
    except Exception:  # noqa: BLE001 - a count the rule can do without
        return None


def apply(profile, overrides: dict):
    """A copy of `profile` with dotted-key overrides (`resources.x`, `options.x`)."""
    if not overrides:
        return profile
    sections: dict[str, dict] = {}
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        sections.setdefault(section, {})[field] = value
    update = {}
    for section, values in sections.items():
        cur = getattr(profile, section)
        if isinstance(cur, dict) or cur is None:
            update[section] = {**(cur or {}), **values}
        else:
            update[section] = cur.model_copy(update=values)
    out = profile.model_copy(update=update)
    out._source, out._path = getattr(profile, "_source", None), getattr(profile, "_path", None)
    return out
