"""Memory plan: formulas, engine semantics, and accuracy against published vLLM logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmdeploy_cli.errors import UsageError
from llmdeploy_cli.models.plan import PlanInputs, compute_plan
from llmdeploy_cli.models.shape import kv_bytes_per_token, params_from_config, shape_from_config
from llmdeploy_cli.models.units import GiB, parse_size

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "plan"
CASES = sorted(FIXTURES.glob("*.json"))


def _case(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_kv_tokens_within_5_percent_of_published_vllm_logs(path):
    """Only what a user knows goes in: GPU memory, utilization, max_model_len, tp, the
    model's config.json and its index total_size, the vLLM version."""
    c = _case(path)
    logged = c["logged"]["kv_cache_tokens"]
    i = c["inputs"]
    if c["check"] == "full":
        inp = PlanInputs(
            engine="vllm",
            config=c["config"],
            weights_bytes=c.get("weights_bytes"),
            weights_source=c.get("weights_source"),
            tensor_parallel=i.get("tensor_parallel", 1),
            gpu_memory_utilization=i.get("gpu_memory_utilization"),
            max_model_len=i.get("max_model_len"),
            max_num_seqs=i.get("max_num_seqs"),
            engine_version=c["engine_version"],
        )
        got = compute_plan(inp, int(c["gpu_mem_gib"] * GiB)).kv_cache_tokens
    else:  # the KV bytes per token, from the logged KV memory
        shape = shape_from_config(c["config"])
        per_gpu, _ = kv_bytes_per_token(shape, 2, i.get("tensor_parallel", 1))
        got = int(c["logged"]["kv_cache_gib"] * GiB // (per_gpu * 16)) * 16
    assert abs(got - logged) / logged <= 0.05, (path.stem, got, logged)


def test_at_least_three_full_cases_with_sources():
    full = [c for c in map(_case, CASES) if c["check"] == "full"]
    assert len(full) >= 3
    assert all(c["source"].startswith("https://github.com/") and c["log"] for c in full)


def _llama8b() -> dict:
    return _case(FIXTURES / "llama31-8b-rtx3090-20k.json")["config"]


def test_kv_per_token_and_tp_split():
    shape = shape_from_config(_llama8b())
    assert kv_bytes_per_token(shape, 2, 1) == (131072, 131072)
    assert kv_bytes_per_token(shape, 2, 2)[0] == 65536
    assert kv_bytes_per_token(shape, 2, 16)[0] == 2 * 32 * 1 * 128 * 2  # >= 1 head per GPU
    assert kv_bytes_per_token(shape, 1, 1)[0] == 65536  # fp8 KV


def test_params_from_config_llama8b():
    assert params_from_config(shape_from_config(_llama8b())) == 8_030_261_248


def test_plan_without_weights_uses_params_and_quantization():
    cfg = _llama8b()
    bf16 = compute_plan(PlanInputs(engine="vllm", config=cfg), 80 * GiB)
    awq = compute_plan(PlanInputs(engine="vllm", config=cfg, quantization="awq"), 80 * GiB)
    assert bf16.weights_bytes == 8_030_261_248 * 2
    assert awq.weights_bytes < bf16.weights_bytes * 0.4
    assert awq.kv_cache_tokens > bf16.kv_cache_tokens


def test_engine_semantics_differ():
    cfg = _llama8b()
    mem = 80 * GiB
    vllm = compute_plan(PlanInputs(engine="vllm", config=cfg, weights_bytes=16 * GiB), mem)
    lmd = compute_plan(PlanInputs(engine="lmdeploy", config=cfg, weights_bytes=16 * GiB), mem)
    sgl = compute_plan(PlanInputs(engine="sglang", config=cfg, weights_bytes=16 * GiB), mem)
    assert vllm.memory_setting == {"gpu_memory_utilization": 0.92}
    assert vllm.budget_bytes == int(0.92 * mem)
    # LMDeploy: 0.8 of what is free after weights (and runtime)
    assert lmd.kv_cache_bytes == int(0.8 * (mem - 16 * GiB - 0.5 * GiB))
    assert sgl.kv_cache_bytes == int(0.88 * mem) - 16 * GiB
    assert len({vllm.kv_cache_tokens, lmd.kv_cache_tokens, sgl.kv_cache_tokens}) == 3
    blocks = compute_plan(
        PlanInputs(engine="lmdeploy", config=cfg, options={"cache_max_entry_count": 100}), mem
    )
    assert blocks.kv_cache_tokens == 6400


def test_does_not_fit_suggests_values():
    cfg = _llama8b()
    plan = compute_plan(
        PlanInputs(engine="vllm", config=cfg, weights_bytes=16 * GiB, max_model_len=131072),
        24 * GiB,
    )
    assert not plan.fits
    keys = {s["key"] for s in plan.suggestions}
    assert {"resources.max_model_len", "resources.kv_cache_dtype", "model.quantization"} <= keys
    huge = compute_plan(PlanInputs(engine="vllm", config=cfg, weights_bytes=40 * GiB), 24 * GiB)
    assert not huge.fits and huge.suggestions[0]["key"] == "resources.tensor_parallel"


def test_concurrency_at_max_model_len():
    plan = compute_plan(
        PlanInputs(engine="vllm", config=_llama8b(), weights_bytes=16 * GiB, max_model_len=8192),
        80 * GiB,
    )
    assert plan.fits
    assert plan.concurrency == round(plan.kv_cache_tokens / 8192, 2)


def test_warnings_for_sliding_window_mla_hybrid():
    base = dict(_llama8b())
    sw = shape_from_config({**base, "sliding_window": 4096})
    assert any("sliding" in n for n in sw.notes)
    mla = shape_from_config({**base, "kv_lora_rank": 512, "qk_rope_head_dim": 64})
    assert any("MLA" in n for n in mla.notes)
    assert kv_bytes_per_token(mla, 2, 4)[0] == 32 * 576 * 2
    hybrid = shape_from_config({**base, "layer_types": ["full_attention", "linear_attention"] * 16})
    assert hybrid.attention_layers == 16 and any("hybrid" in n for n in hybrid.notes)


@pytest.mark.parametrize(
    "text,value",
    [
        ("80GiB", 80 * GiB),
        ("24G", 24 * GiB),
        ("81559MiB", 81559 * 1024**2),
        ("80GB", 80 * 10**9),
        ("1024", 1024),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_size_rejects():
    with pytest.raises(UsageError):
        parse_size("lots")


def test_tied_lm_head_stored_in_files_is_not_counted(write_profile, tmp_path):
    import struct

    from llmdeploy_cli.models.plan import plan_for
    from llmdeploy_cli.profile import load_profile

    d = tmp_path / "tied"
    d.mkdir()
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 8,
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "vocab_size": 16,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "tokenizer.json").write_text("{}")
    header = {
        "model.embed_tokens.weight": {"dtype": "BF16", "shape": [16, 8], "data_offsets": [0, 256]},
        "lm_head.weight": {"dtype": "BF16", "shape": [16, 8], "data_offsets": [256, 512]},
    }
    raw = json.dumps(header).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 512)
    p = write_profile(f"name: t\nbackend: vllm\nmodel: {{source: {d}}}\n")
    plan = plan_for(load_profile(p), 24 * GiB)
    assert plan.weights_bytes == 256 and "tied" in plan.weights_source


def test_cli_plan_text_and_json(write_profile, tiny_model, capsys):
    from llmdeploy_cli.cli.app import main

    p = write_profile(
        f"""
        name: tiny
        backend: vllm
        model: {{source: {tiny_model}}}
        resources: {{max_model_len: 512, gpu_memory_utilization: 0.5}}
        """
    )
    assert main(["plan", str(p), "--gpu-mem", "24GiB"]) == 0
    text = capsys.readouterr().out
    assert "KV cache" in text and "gpu_memory_utilization 0.5" in text
    assert main(["plan", str(p), "--gpu-mem", "24GiB", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["kv_cache_tokens"] > 512
    assert doc["weights_source"] == "safetensors headers"
    assert main(["plan", str(p), "--gpu-mem", "lots", "--json"]) == 2
