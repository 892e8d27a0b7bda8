"""Each backend's memory rule (its `memory` capability) and what the plan asks of it."""

from __future__ import annotations

import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.capabilities import NOT_SUPPORTED
from llmdeploy_cli.errors import UsageError
from llmdeploy_cli.memory_rules import MemoryRule, Sizing
from llmdeploy_cli.models.plan import PlanInputs, compute_plan, memory_need, memory_rule
from llmdeploy_cli.models.units import GiB, MiB
from llmdeploy_cli.profile import load_profile
from tests.fakes import llama3_8b_config

SIZING = {
    "vllm": Sizing.FRACTION_OF_TOTAL,
    "sglang": Sizing.FRACTION_OF_TOTAL,
    "lmdeploy": Sizing.FRACTION_OF_FREE,
    "llamacpp": Sizing.LAYERS,
    "ollama": Sizing.LAYERS,
    "transformers": Sizing.NONE,
    "infinity": Sizing.NONE,
}


@pytest.mark.parametrize("name", registry.names())
def test_every_backend_declares_a_rule_with_a_sourced_base(name):
    rule = registry.get(name).memory
    if rule is NOT_SUPPORTED:
        with pytest.raises(UsageError, match="declares no memory rule"):
            memory_rule(name)
        return
    assert isinstance(rule, MemoryRule)
    assert rule.base.bytes > 0
    assert rule.base.source.startswith(("measured:", "estimate:")), rule.base.source
    if name in SIZING:
        assert rule.sizing is SIZING[name]


def test_the_gpu_need_follows_the_engine_rule():
    """A fraction-of-total engine takes its whole budget at start; LMDeploy takes weights,
    its KV share of the free memory and its runtime; a no-pool engine what the context needs."""
    mem = 80 * GiB
    inp = {"config": llama3_8b_config(), "weights_bytes": 16 * GiB, "max_model_len": 8192}
    vllm = compute_plan(PlanInputs(engine="vllm", **inp), mem)
    assert memory_rule("vllm").gpu_need(vllm) == vllm.budget_bytes == int(0.92 * mem)
    lmd = compute_plan(PlanInputs(engine="lmdeploy", **inp), mem)
    assert memory_rule("lmdeploy").gpu_need(lmd) == (
        lmd.weights_per_gpu + lmd.kv_cache_bytes + lmd.reserve["runtime"]
    )
    tf = compute_plan(PlanInputs(engine="transformers", **inp), mem)
    need = memory_rule("transformers").gpu_need(tf)
    assert need == 16 * GiB + int(8192 * tf.kv_bytes_per_token) + tf.reserve["runtime"]
    assert need < memory_rule("vllm").gpu_need(vllm)


def test_memory_need_on_gpu_and_on_cpu(write_profile, tiny_model):
    gpu = load_profile(
        write_profile(
            f"""
            name: g
            backend: vllm
            model: {{source: {tiny_model}}}
            resources: {{gpu_memory_utilization: 0.5, tensor_parallel: 2}}
            """,
            "g.yml",
        )
    )
    need = memory_need(gpu, gpu_mem_bytes=24 * GiB)
    assert need.on_gpu and need.gpus == 2 and need.gpu_bytes == 12 * GiB
    assert need.host_bytes == memory_rule("vllm").base.bytes
    cpu = load_profile(
        write_profile(
            f"""
            name: c
            backend: transformers
            model: {{source: {tiny_model}}}
            resources: {{device: cpu, max_model_len: 256}}
            """,
            "c.yml",
        )
    )
    need = memory_need(cpu)
    p = need.plan
    kv = int(p.kv_bytes_per_token_total * 256)
    assert not need.on_gpu and need.gpu_bytes == 0
    assert need.host_bytes == p.weights_bytes + kv + 848 * MiB
    assert need.base_source.startswith("measured:")


def test_a_backend_without_a_rule_gets_a_clear_refusal(monkeypatch, write_profile, tiny_model):
    """memory = NOT_SUPPORTED: plan refuses in one line naming the backend (exit 2), and
    doctor's gpu.memory is a skip saying why, not a guess."""
    from llmdeploy_cli.cli.app import main
    from llmdeploy_cli.models.doctor import run_doctor
    from llmdeploy_cli.models.gpus import GpuInfo

    monkeypatch.setattr(type(registry.get("transformers")), "memory", NOT_SUPPORTED)
    p = write_profile(
        f"""
        name: nr
        backend: transformers
        model: {{source: {tiny_model}}}
        """
    )
    assert main(["plan", str(p), "--gpu-mem", "24GiB"]) == 2
    gpu = GpuInfo(0, "NVIDIA Test", 24 * GiB, 23 * GiB, "570.1", "12.8")
    report = run_doctor(p, environ={}, gpu_query=lambda: ([gpu], None))
    check = next(c for c in report.checks if c.check == "gpu.memory")
    assert check.level == "skip" and "declares no memory rule" in check.message
