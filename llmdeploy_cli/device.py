"""`resources.device: auto`: the GPU when there is one and the profile fits it, else the CPU.

Opt-in and loud (docs/profiles.md): only `auto` is ever decided here; `cuda` never falls
back and `cpu` stays on the CPU. For a backend that declares it runs on CPU
(`runs_on_cpu`), the decision is made when something is about to run the engine (serve,
its detached supervisor, doctor's and serve's checks, plan, the gateway: `resolve()`),
never by render, validate or export, which stay static and show `auto`:

- no NVIDIA GPU visible (NVML / nvidia-smi), or fewer than tensor x pipeline parallel: CPU;
- the memory plan (models.plan.memory_need, the backend's memory rule) needs more than the
  FREE memory of a GPU it would use: CPU;
- the plan cannot be made (no config.json on disk yet): the GPU, saying why;
- otherwise the GPU.

A backend that cannot run on CPU treats `auto` as the GPU (its plan is not re-rendered;
the decision says so). The decided profile is the same profile with `resources.device`
set to the device chosen; `Profile.device_decision` keeps the decision for serve's
warning line and its `--json` (`device_decision`), and for doctor's `device` row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Backend
    from llmdeploy_cli.profile import Profile


@dataclass(frozen=True)
class DeviceDecision:
    device: str  # "cuda" or "cpu"
    reason: str
    fallback: bool  # True: the CPU although the profile allowed a GPU

    def as_dict(self) -> dict:
        return {
            "requested": "auto",
            "device": self.device,
            "fallback": self.fallback,
            "reason": self.reason,
        }

    def line(self, engine: str) -> str:
        """The one warning line serve prints."""
        if self.device == "cpu":
            return (
                f"resources.device auto -> cpu: {self.reason}; {engine} runs on the CPU, "
                "many times slower than on a GPU (set device: cuda to refuse the fallback)"
            )
        return f"resources.device auto -> cuda: {self.reason}"


def decide(
    profile: Profile,
    backend: Backend,
    *,
    engine_version: str | None = None,
    gpu_query: Callable | None = None,
    environ: Mapping[str, str] | None = None,
) -> DeviceDecision | None:
    """The device for `resources.device: auto`; None for any other value."""
    if profile.resources.device != "auto":
        return None
    from llmdeploy_cli.models.gpus import query_gpus, visible_gpus
    from llmdeploy_cli.models.units import fmt_bytes

    if getattr(backend, "runs_on_cpu", False) is not True:
        return DeviceDecision(
            "cuda", f"{backend.name} does not run on CPU: auto means the GPU", False
        )
    gpus, why = (gpu_query or query_gpus)()
    if not gpus:
        return DeviceDecision("cpu", f"no NVIDIA GPU found ({why or 'none listed'})", True)
    devices = visible_gpus(profile, gpus, environ)
    r = profile.resources
    need_gpus = max(1, r.tensor_parallel) * max(1, r.pipeline_parallel)
    if len(devices) < need_gpus:
        return DeviceDecision(
            "cpu", f"the profile needs {need_gpus} GPUs and {len(devices)} are visible", True
        )
    used = devices[:need_gpus]
    card = min(used, key=lambda g: g.free_bytes)
    from llmdeploy_cli.errors import LlmctlError
    from llmdeploy_cli.models.plan import memory_need

    try:
        need = memory_need(profile, gpu_mem_bytes=card.total_bytes, engine_version=engine_version)
    except (LlmctlError, OSError, ValueError, KeyError) as e:
        why_not = getattr(e, "message", None) or str(e)
        return DeviceDecision(
            "cuda", f"GPU {card.index} ({card.name}) found; memory not planned: {why_not}", False
        )
    have = f"{fmt_bytes(card.free_bytes)} free of {fmt_bytes(card.total_bytes)}"
    if need.gpu_bytes > card.free_bytes:
        return DeviceDecision(
            "cpu",
            f"the memory plan needs {fmt_bytes(need.gpu_bytes)} per GPU and GPU {card.index} "
            f"({card.name}) has {have}",
            True,
        )
    return DeviceDecision(
        "cuda",
        f"GPU {card.index} ({card.name}): the memory plan needs {fmt_bytes(need.gpu_bytes)}, "
        f"{have}",
        False,
    )


def decided(profile: Profile, decision: DeviceDecision, backend: Backend) -> Profile:
    """The profile the engine runs with: resources.device set to the decision (a backend that
    cannot run on CPU keeps `auto`: its engine's own default is the GPU)."""
    keep = getattr(backend, "runs_on_cpu", False) is not True
    res = (
        profile.resources
        if keep
        else profile.resources.model_copy(update={"device": decision.device})
    )
    out = profile.model_copy(update={"resources": res})
    out._device_decision = decision
    return out


def check_device(profile: Profile) -> list:
    """Doctor's and preflight's `device` row: what `auto` was decided as, and why."""
    from llmdeploy_cli.errors import Problem

    d = getattr(profile, "device_decision", None)
    if d is None:
        return []
    level = "warn" if d.fallback else "pass"
    fix = "set resources.device: cuda to refuse the fallback" if d.fallback else None
    return [
        Problem(
            "device",
            level,
            f"auto -> {d.device}: {d.reason}",
            fix=fix,
            data=d.as_dict(),
        )
    ]
