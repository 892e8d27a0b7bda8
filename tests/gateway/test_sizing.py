"""Engines that size themselves, started by the gateway next to others: each backend's
`setting_for_budget` checked against the memory plan it would start with, the overrides
applied to a real profile, and the wait for a stopped engine's GPU memory (a fake
nvidia-smi whose free memory changes over time). Not run on a GPU: no GPU here."""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmdeploy_cli.gateway import sizing
from llmdeploy_cli.gateway.fleet import READY, STOPPED, Fleet
from llmdeploy_cli.memory_rules import RUNTIME_RESERVE
from llmdeploy_cli.models.gpus import GpuInfo, query_gpus
from llmdeploy_cli.models.plan import PlanInputs, compute_plan, memory_rule
from llmdeploy_cli.models.units import GiB, MiB
from llmdeploy_cli.profile import load_profile
from tests.fakes import llama3_8b_config
from tests.gateway.test_fleet import FakeEngine, model

CARD = 80 * GiB


def plan(engine, **kw):
    inp = {"config": llama3_8b_config(), "weights_bytes": 16 * GiB, "max_model_len": 8192, **kw}
    return compute_plan(PlanInputs(engine=engine, **inp), CARD)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_a_fraction_of_total_engine_gets_the_fraction_of_its_budget(engine):
    rule = memory_rule(engine)
    p = plan(engine)
    got = rule.setting_for_budget(p, 30 * GiB, CARD, 50 * GiB)
    frac = got["resources.gpu_memory_utilization"]
    assert frac == math.floor(30 / 80 * 100) / 100
    # started with it, the plan says it takes at most its budget and holds a full request
    again = plan(engine, gpu_memory_utilization=frac)
    assert rule.gpu_need(again) <= 30 * GiB and again.fits
    # less free than the budget (others resident): the fraction fits in what is free
    got = rule.setting_for_budget(p, 30 * GiB, CARD, 21 * GiB)
    assert got["resources.gpu_memory_utilization"] * CARD <= 21 * GiB
    # a budget below weights + one request: no setting
    assert rule.setting_for_budget(p, 16 * GiB, CARD, 50 * GiB) is None


def test_lmdeploy_gets_a_cache_share_of_the_free_memory_that_fits():
    rule = memory_rule("lmdeploy")
    p = plan("lmdeploy")
    free = 60 * GiB
    got = rule.setting_for_budget(p, 30 * GiB, CARD, free)
    entry = got["options.cache_max_entry_count"]
    assert 0 < entry < 1
    # LMDeploy sizes from what is free at start: plan it on a card of that size
    at_start = compute_plan(
        PlanInputs(
            engine="lmdeploy",
            config=llama3_8b_config(),
            weights_bytes=16 * GiB,
            max_model_len=8192,
            options={"cache_max_entry_count": entry},
        ),
        free,
    )
    assert rule.gpu_need(at_start) <= 30 * GiB and at_start.fits
    assert rule.gpu_need(at_start) > 29 * GiB  # and not much less: rounded to a hundredth
    assert rule.setting_for_budget(p, 17 * GiB, CARD, free) is None


def test_llamacpp_gets_its_context_and_the_layers_that_fit():
    rule = memory_rule("llamacpp")
    p = plan("llamacpp", max_num_seqs=1)
    kv = int(p.max_model_len * p.kv_bytes_per_token)
    whole = p.weights_per_gpu + kv + RUNTIME_RESERVE
    got = rule.setting_for_budget(p, whole, CARD, 50 * GiB, layers=32)
    assert got == {"resources.max_model_len": 8192, "options.n_gpu_layers": "all"}
    got = rule.setting_for_budget(p, whole - 4 * GiB, CARD, 50 * GiB, layers=32)
    n = got["options.n_gpu_layers"]
    assert 0 < n < 32
    assert n * p.weights_per_gpu / 32 + kv + RUNTIME_RESERVE <= whole - 4 * GiB
    assert (n + 1) * p.weights_per_gpu / 32 + kv + RUNTIME_RESERVE > whole - 4 * GiB
    assert rule.setting_for_budget(p, whole - 4 * GiB, CARD, 50 * GiB) is None  # no count
    assert rule.setting_for_budget(p, kv, CARD, 50 * GiB, layers=32) is None


@pytest.mark.parametrize("engine", ["transformers", "infinity"])
def test_engines_without_a_pool_get_nothing(engine):
    assert memory_rule(engine).setting_for_budget(plan(engine), 10 * GiB, CARD, CARD) == {}


def _gw_model(profile):
    return SimpleNamespace(
        name=profile.name,
        profile=profile,
        evictable=True,
        resolved=SimpleNamespace(plan=SimpleNamespace(engine_version=None)),
    )


def test_overrides_for_a_real_profile_are_applied_and_planned(write_profile, tiny_model):
    prof = load_profile(
        write_profile(
            f"""
            name: v
            backend: vllm
            model: {{source: {tiny_model}}}
            resources: {{max_model_len: 256}}
            """,
            "v.yml",
        )
    )
    m = _gw_model(prof)
    gpus = [GpuInfo(0, "H100", CARD, 30 * GiB)]
    assert sizing.start_overrides(m, {"host": GiB}, gpus) == {}  # on the CPU: nothing
    got = sizing.start_overrides(m, {"gpu:0": 8 * GiB, "host": GiB}, gpus)
    assert got == {"resources.gpu_memory_utilization": 0.1}
    sized = sizing.apply(prof, got)
    assert sized.resources.gpu_memory_utilization == 0.1 and sized.name == "v"
    assert prof.resources.gpu_memory_utilization is None  # the profile itself is unchanged
    from llmdeploy_cli.models.plan import memory_need

    assert memory_need(sized, gpu_mem_bytes=CARD).gpu_bytes <= 8 * GiB
    with pytest.raises(sizing.NoSetting, match="gpu:0"):
        sizing.start_overrides(m, {"gpu:0": 8 * GiB}, [GpuInfo(0, "H100", CARD, 64 * MiB)])
    # options are merged, not replaced
    opt = sizing.apply(prof.model_copy(update={"options": {"a": 1}}), {"options.b": 2})
    assert opt.options == {"a": 1, "b": 2}


def _smi(folder: Path, free_file: Path) -> Path:
    """An nvidia-smi whose free memory (MiB) is read from `free_file` at each call."""
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu=*) '
        f'printf "0, NVIDIA H100 80GB HBM3, 81920, %s, 570.86, 9.0\\n" "$(cat {free_file})";; '
        "*) echo 'CUDA Version: 12.8';; esac\n"
    )
    smi.chmod(0o755)
    return folder


@pytest.fixture
def smi(tmp_path, monkeypatch):
    free = tmp_path / "free-mib"
    free.write_text(str(75 * 1024))
    d = _smi(tmp_path / "bin", free)
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-smi, not a real NVML
    assert query_gpus()[0][0].free_bytes == 75 * GiB
    return free


def _gpu_fleet(wait: float, log: list, seen: dict):
    def starter(m, need, gpus):
        seen[m.name] = (time.monotonic(), gpus)
        return FakeEngine(log, m.name, 0.01, False)

    starter.sizes = True
    models = [model("a"), model("b")]
    f = Fleet(
        models,
        {"gpu:0": 70 * GiB},
        {m.name: {"gpu:0": 40 * GiB} for m in models},
        starter,
        gpu_query=lambda: query_gpus()[0],
    )
    f.gpu_free_wait = wait
    return f


async def _use(f, name):
    lease = await f.lease(name)
    lease.release()


def test_after_a_stop_the_next_start_waits_for_the_gpu_to_free_it(smi):
    async def go():
        log, seen = [], {}
        f = _gpu_fleet(10.0, log, seen)
        await _use(f, "a")
        assert seen["a"][1][0].free_bytes == 75 * GiB  # the first start does not wait
        smi.write_text(str(35 * 1024))  # a holds its 40 GiB
        b = asyncio.create_task(_use(f, "b"))  # a is evicted for b
        await asyncio.sleep(0.8)
        assert ("stop", "a") in log and "b" not in seen  # the driver still holds a's memory
        assert f.slots["a"].state == STOPPED and f.slots["b"].phase == "waiting for GPU memory"
        freed = time.monotonic()
        smi.write_text(str(75 * 1024))
        await b
        assert seen["b"][0] >= freed and seen["b"][1][0].free_bytes == 75 * GiB
        assert f.slots["b"].state == READY

    asyncio.run(asyncio.wait_for(go(), 20))


def test_the_wait_for_gpu_memory_is_bounded(smi):
    async def go():
        log, seen = [], {}
        f = _gpu_fleet(0.6, log, seen)
        await _use(f, "a")
        smi.write_text(str(35 * 1024))
        t0 = time.monotonic()
        await _use(f, "b")  # the memory never shows free: b starts after the bound
        assert 0.5 <= seen["b"][0] - t0 < 5 and seen["b"][1][0].free_bytes == 35 * GiB

    asyncio.run(asyncio.wait_for(go(), 20))


def test_an_engine_started_on_a_gpu_is_rendered_with_its_setting(tmp_path, tiny_model):
    """The real start seam: the rendered vLLM command carries the computed fraction, and
    the engine keeps the profile's own name as its model name (not the run's)."""
    from llmdeploy_cli.gateway.config import load_gateway
    from llmdeploy_cli.gateway.engine import ServedEngine
    from llmdeploy_cli.gateway.needs import need_of

    (tmp_path / "v.yml").write_text(
        f"name: v\nbackend: vllm\nmodel: {{source: {tiny_model}}}\n"
        "resources: {max_model_len: 256}\n"
    )
    (tmp_path / "gw.yml").write_text(
        "name: lab\nprofiles: [v.yml]\nmemory: {gpus: [40GiB], host_ram: 8GiB}\n"
    )
    m = load_gateway(tmp_path / "gw.yml", {}).models["v"]
    need = need_of(m, {"gpu:0": 40 * GiB, "host": 8 * GiB}).devices
    before = set(os.environ)
    try:
        e = ServedEngine(m, "lab", {}, None, need, [GpuInfo(0, "H100", CARD, 30 * GiB)])
    finally:
        for k in set(os.environ) - before:  # the engine key it made for itself
            del os.environ[k]
    assert e.sizing == {"resources.gpu_memory_utilization": 0.37}  # 30 GiB free of 80
    argv = [a for step in e.resolved.plan.steps for a in step.command.argv]
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.37"
    assert argv[argv.index("--served-model-name") + 1] == "v" and e.model == "v"
    assert e.profile.name == "lab/v"
