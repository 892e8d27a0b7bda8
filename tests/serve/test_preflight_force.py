"""serve's preflight runs the memory plan where a GPU is there: a profile that cannot fit
is refused (exit 3) unless --force, which keeps it as a warning."""

from __future__ import annotations

import pytest

from llmdeploy_cli import preflight
from llmdeploy_cli.errors import PreflightError
from llmdeploy_cli.models import gpus as gpus_mod
from llmdeploy_cli.models.gpus import GpuInfo
from llmdeploy_cli.models.units import GiB
from llmdeploy_cli.resolve import resolve


@pytest.fixture
def small_gpu(monkeypatch):
    """A GPU with too little free memory for any KV cache (a GPU cannot be had here)."""
    gpu = GpuInfo(0, "NVIDIA Tiny", 1 * GiB, 1 * GiB // 1000, "570.1", "12.8")
    monkeypatch.setattr(gpus_mod, "query_gpus", lambda timeout=5.0: ([gpu], None))


@pytest.fixture
def profile(write_profile, tiny_model):
    return write_profile(
        f"""
        name: tiny
        backend: vllm
        model: {{source: {tiny_model}}}
        runtime: {{engine_version: 0.33.0}}
        resources: {{gpu_memory_utilization: 0.001, max_model_len: 512}}
        server: {{port: auto}}
        """
    )


def gpu_memory(problems):
    return [p for p in problems if p.check == "gpu.memory"]


def test_plan_that_cannot_fit_is_refused(small_gpu, profile):
    r = resolve(profile, {})
    assert [p.level for p in gpu_memory(preflight.problems(r, environ={}))] == ["fail"]
    with pytest.raises(PreflightError) as e:
        preflight.check(r, environ={}, check_running=False)
    assert any(d.check == "gpu.memory" for d in e.value.details)


def test_force_keeps_it_as_a_warning(small_gpu, profile):
    r = resolve(profile, {})
    found = preflight.problems(r, environ={})
    others = [p for p in found if p.level == "fail" and p.check != "gpu.memory"]
    if others:  # e.g. vllm not installed here: force must not hide those
        with pytest.raises(PreflightError) as e:
            preflight.check(r, environ={}, check_running=False, force=True)
        assert all(d.check != "gpu.memory" for d in e.value.details)
    else:
        warns = preflight.check(r, environ={}, check_running=False, force=True)
        assert any(p.check == "gpu.memory" and "--force" in p.message for p in warns)
