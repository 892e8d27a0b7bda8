"""Fixes name keys the backend accepts: every remedy a backend declares, and every suggestion
the plan makes for it, goes through validation on a profile of that backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.memory_rules import MemoryRule
from llmdeploy_cli.models.gpus import GpuInfo
from llmdeploy_cli.models.plan import PlanInputs, compute_plan
from llmdeploy_cli.models.remedies import accepted, remedies_of, with_key
from llmdeploy_cli.models.units import GiB
from llmdeploy_cli.profile import load_profile
from llmdeploy_cli.resolve import resolve_profile

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "plan"

# A value validate takes, for the remedies whose value the plan works out.
SAMPLE = {
    "resources.tensor_parallel": 2,
    "resources.max_model_len": 2048,
    "resources.max_num_seqs": 8,
    "resources.gpu_memory_utilization": 0.9,
    "options.cache_max_entry_count": 0.9,
}


def _source(name: str, tmp_path: Path) -> str:
    """A model source the backend's validation takes (a GGUF file, a pull name, a folder)."""
    from llmdeploy_cli.capabilities import ModelFormat

    fmts = registry.get(name).model_formats
    if ModelFormat.REGISTRY_NAME in fmts:
        return "qwen2.5-instruct"
    if ModelFormat.HF_FOLDER in fmts:
        return "org/model"
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    return str(f)


def _profile(name: str, tmp_path: Path):
    p = tmp_path / f"{name}.yml"
    p.write_text(f"name: t\nbackend: {name}\nmodel:\n  source: {_source(name, tmp_path)}\n")
    return load_profile(p, {})


def _validates(profile, key, value) -> None:
    backend = registry.get(profile.backend)
    resolve_profile(with_key(profile, key, value), {}, engine_version=backend.newest_known)


@pytest.mark.parametrize("name", registry.names())
def test_every_declared_remedy_validates(name, tmp_path):
    profile = _profile(name, tmp_path)
    _validates(profile, "name", "t")  # the base profile itself is valid
    for remedy in remedies_of(registry.get(name)).all():
        value = remedy.value if remedy.value is not None else SAMPLE[remedy.key]
        _validates(profile, remedy.key, value)  # raises ProfileError naming the key


def _llama8b() -> dict:
    return json.loads((FIXTURES / "llama31-8b-rtx3090-20k.json").read_text())["config"]


@pytest.mark.parametrize("name", registry.names())
def test_every_plan_suggestion_validates(name, tmp_path):
    """Weights that do not fit, and a KV cache too short for the context: every suggestion
    the plan makes for this backend is a key and value its validation takes."""
    rule = getattr(registry.get(name), "memory", None)
    if not isinstance(rule, MemoryRule):
        pytest.skip(f"{name} declares no memory rule: plan makes no suggestion")
    profile = _profile(name, tmp_path)
    cases = [
        PlanInputs(engine=name, config=_llama8b(), weights_bytes=40 * GiB),
        PlanInputs(engine=name, config=_llama8b(), weights_bytes=16 * GiB, max_model_len=131072),
        PlanInputs(
            engine=name,
            config=_llama8b(),
            weights_bytes=16 * GiB,
            max_model_len=8192,
            max_num_seqs=512,
        ),
    ]
    seen = 0
    for inp in cases:
        for s in compute_plan(inp, 24 * GiB).suggestions:
            seen += 1
            _validates(profile, s["key"], s["value"])
    assert seen or not remedies_of(registry.get(name)).all(), name


def test_suggestions_are_each_engines_own_keys():
    cfg = _llama8b()
    short = {"config": cfg, "weights_bytes": 16 * GiB, "max_model_len": 131072}

    def keys(engine):
        plan = compute_plan(PlanInputs(engine=engine, **short), 24 * GiB)
        return {s["key"]: s["value"] for s in plan.suggestions}

    assert keys("sglang")["resources.kv_cache_dtype"] == "fp8_e4m3"  # SGLang refuses "fp8"
    lmd = keys("lmdeploy")
    assert "resources.gpu_memory_utilization" not in lmd  # LMDeploy refuses that key
    assert lmd["resources.kv_cache_dtype"] == "int8"
    tf = compute_plan(
        PlanInputs(engine="transformers", config=cfg, weights_bytes=40 * GiB), 24 * GiB
    )
    assert [s["key"] for s in tf.suggestions] == ["model.quantization"]
    assert tf.suggestions[0]["value"] == "bnb-4bit"


def test_plan_drops_a_suggestion_this_profile_refuses(tmp_path):
    """llama-cpp-python refuses resources.kv_cache_dtype: the llama.cpp remedy is not
    offered to such a profile, though llama-server takes it."""
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    p = tmp_path / "p.yml"
    p.write_text(
        f"name: t\nbackend: llamacpp\nmodel: {{source: {gguf}}}\n"
        "options: {runtime: llama-cpp-python}\n"
    )
    lcp = load_profile(p, {})
    assert not accepted(lcp, "resources.kv_cache_dtype", "q8_0")
    assert accepted(_profile("llamacpp", tmp_path), "resources.kv_cache_dtype", "q8_0")


def test_doctor_memory_fix_names_the_engines_own_key(write_profile, tiny_model):
    """A vLLM card with too little free memory: the fix names gpu_memory_utilization;
    LMDeploy (sized from free memory) is never told to lower a key it refuses."""
    from llmdeploy_cli.models.doctor import run_doctor

    busy = GpuInfo(0, "NVIDIA A100", 80 * GiB, 10 * GiB, "570.1", "12.8", (8, 0))
    fixes = {}
    for engine in ("vllm", "lmdeploy"):
        p = write_profile(
            f"name: t\nbackend: {engine}\nmodel: {{source: {tiny_model}}}\n", f"{engine}.yml"
        )
        report = run_doctor(p, environ={}, gpu_query=lambda: ([busy], None))
        fixes[engine] = next(c for c in report.checks if c.check == "gpu.memory")
    assert fixes["vllm"].level == "fail"
    assert "resources.gpu_memory_utilization" in fixes["vllm"].fix
    # LMDeploy takes 0.8 of what is free: 10 GiB free is plenty for a tiny model
    assert fixes["lmdeploy"].level == "pass", fixes["lmdeploy"].message
    assert "free" in fixes["lmdeploy"].message
