"""Verdicts that must match the engine: load-time quantization, the model's own context
limit, the card's compute capability (through a fake nvidia-smi on PATH), each engine's
memory semantics, and GPU checks only where an NVIDIA card is needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmdeploy_cli.models.checks_gpu import check_gpu
from llmdeploy_cli.models.doctor import run_doctor
from llmdeploy_cli.models.gpus import GpuInfo, query_gpus
from llmdeploy_cli.models.plan import PlanInputs, compute_plan
from llmdeploy_cli.models.shape import derived_max_len
from llmdeploy_cli.models.units import GiB
from llmdeploy_cli.profile import load_profile
from tests.fakes import fake_nvidia_smi

LLAMA2_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "num_hidden_layers": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "torch_dtype": "float16",
}
SEVEN_B_FILES = 13_476_839_424  # Llama-2-7b-hf's index metadata.total_size (fp16)


def _by(report):
    return {c.check: c for c in report.checks}


# -- load-time quantization --------------------------------------------------------------


def test_bnb_shrinks_the_weights_even_when_the_file_sizes_are_known():
    base = dict(engine="transformers", config=LLAMA2_7B, weights_bytes=SEVEN_B_FILES)
    fp16 = compute_plan(PlanInputs(**base), 16 * GiB)
    nf4 = compute_plan(PlanInputs(**base, quantization="bnb-4bit"), 16 * GiB)
    int8 = compute_plan(PlanInputs(**base, quantization="bnb-8bit"), 16 * GiB)
    embed = 2 * 32000 * 4096 * 2  # embeddings + LM head, kept 16-bit
    linear = SEVEN_B_FILES // 2 - 2 * 32000 * 4096
    assert fp16.weights_bytes == SEVEN_B_FILES
    assert abs(nf4.weights_bytes - (linear * 0.516 + embed)) < 0.01 * GiB
    assert abs(int8.weights_bytes - (linear + embed)) < 0.01 * GiB
    assert "NF4" in nf4.weights_source and "embeddings 16-bit" in nf4.weights_source
    # vLLM's bitsandbytes (4-bit in flight, fp32 absmax) and fp8 at load
    vb = compute_plan(
        PlanInputs(
            engine="vllm",
            config=LLAMA2_7B,
            weights_bytes=SEVEN_B_FILES,
            quantization="bitsandbytes",
        ),
        16 * GiB,
    )
    assert nf4.weights_bytes < vb.weights_bytes < 0.35 * SEVEN_B_FILES
    # a checkpoint that is already quantized is not shrunk twice
    pre = dict(
        LLAMA2_7B, quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True}
    )
    files = compute_plan(
        PlanInputs(engine="vllm", config=pre, weights_bytes=4 * GiB, quantization="bitsandbytes"),
        16 * GiB,
    )
    assert files.weights_bytes == 4 * GiB


def _seven_b_folder(tmp_path: Path) -> Path:
    d = tmp_path / "llama-2-7b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(LLAMA2_7B))
    index = {
        "metadata": {"total_size": SEVEN_B_FILES},
        "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"},
    }
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    return d


def test_a_4bit_7b_on_a_16gb_card_passes_the_memory_check(write_profile, tmp_path):
    d = _seven_b_folder(tmp_path)
    card = GpuInfo(0, "NVIDIA T4", 16 * GiB, int(14.5 * GiB), "570.1", "12.8", (7, 5))
    got = {}
    for q in ("", "  quantization: bnb-4bit\n"):
        p = write_profile(f"name: t\nbackend: transformers\nmodel:\n  source: {d}\n{q}")
        checks = check_gpu(load_profile(p), d, _plan(p), lambda: ([card], None))
        got[bool(q)] = next(c for c in checks if c.check == "gpu.memory")
    assert got[False].level == "fail"  # 12.6 GiB of fp16 weights + the KV of 4096 tokens
    assert got[True].level == "pass", got[True].message


def _plan(p):
    from llmdeploy_cli.resolve import resolve

    return resolve(p, {}).plan


# -- the model's own context limit -----------------------------------------------------------


def test_derived_max_len_follows_vllm():
    assert derived_max_len({"max_position_embeddings": 4096}).derived == 4096
    # the smallest key wins; model_max_length (Command-R) wins outright
    assert derived_max_len({"max_position_embeddings": 8192, "n_positions": 2048}).derived == 2048
    cohere = derived_max_len({"max_position_embeddings": 8192, "model_max_length": 131072})
    assert (cohere.derived, cohere.key) == (131072, "model_max_length")
    yarn = {
        "max_position_embeddings": 40960,
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 32768,
        },
    }
    assert derived_max_len(yarn).derived == 131072
    llama3 = {
        "max_position_embeddings": 131072,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0},
    }
    assert derived_max_len(llama3).derived == 131072  # already counted
    linear = {"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 2.0}}
    assert derived_max_len(linear).derived == 8192
    gemma3 = {
        "model_type": "gemma3",
        "max_position_embeddings": 131072,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    }
    assert derived_max_len(gemma3).derived == 131072
    assert derived_max_len({"hidden_size": 8}) is None


def test_max_model_len_above_the_limit_fails_before_spawn(write_profile, tiny_model):
    from llmdeploy_cli import preflight

    def doctor(engine, length, env=""):
        p = write_profile(
            f"name: t\nbackend: {engine}\nmodel: {{source: {tiny_model}}}\n"
            f"resources: {{max_model_len: {length}}}\n{env}",
            f"{engine}-{length}-{bool(env)}.yml",
        )
        return p, _by(run_doctor(p, environ={}, gpu_query=lambda: ([], "none")))

    p, got = doctor("vllm", 1024)  # the tiny model's max_position_embeddings is 512
    c = got["model.context"]
    assert c.level == "fail" and "512" in c.message and "refuses" in c.message
    assert c.fix == "resources.max_model_len: 512 (or less)"
    assert doctor("vllm", 512)[1]["model.context"].level == "pass"
    allowed = doctor("vllm", 1024, "env: {VLLM_ALLOW_LONG_MAX_MODEL_LEN: '1'}\n")[1]
    assert allowed["model.context"].level == "warn"
    assert doctor("sglang", 1024)[1]["model.context"].level == "fail"
    lmd = doctor("lmdeploy", 1024)[1]["model.context"]  # LMDeploy warns and serves it
    assert lmd.level == "warn" and "refuses" not in lmd.message
    # serve's preflight stops on it too (exit 3), before anything is spawned
    from llmdeploy_cli.errors import PreflightError
    from llmdeploy_cli.resolve import resolve

    with pytest.raises(PreflightError) as e:
        preflight.check(resolve(p, {}), environ={}, check_running=False)
    assert e.value.code == 3
    ctx = [d for d in e.value.details if d.check == "model.context"]
    assert ctx and "above the model's own limit 512" in ctx[0].message


# -- the card can run it -------------------------------------------------------------------


def _fake_smi(tmp_path: Path, monkeypatch, rows: str, refuse_cc: bool = False) -> None:
    """An nvidia-smi on PATH answering --query-gpu like the real one (CSV, no units)."""
    d = fake_nvidia_smi(tmp_path / "bin", rows, refuse_compute_cap=refuse_cc)
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")


def test_compute_capability_is_read_from_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, "0, Tesla T4, 15360, 15000, 550.54, 7.5")
    gpus, why = query_gpus()
    assert why is None and gpus[0].compute_cap == (7, 5) and gpus[0].cuda == "12.8"
    old = tmp_path / "old"
    old.mkdir()
    _fake_smi(old, monkeypatch, "0, Tesla T4, 15360, 15000, 470.1, 7.5", refuse_cc=True)
    gpus, why = query_gpus()  # a driver without the field: listed, capability unknown
    assert why is None and gpus[0].compute_cap is None and gpus[0].total_bytes == 15360 * 2**20


def test_bf16_on_a_t4_fails_with_the_engines_minimum(
    tmp_path, monkeypatch, write_profile, tiny_model
):
    _fake_smi(tmp_path, monkeypatch, "0, Tesla T4, 15360, 15000, 550.54, 7.5")

    def capability(model_keys: str):
        p = write_profile(
            f"name: t\nbackend: vllm\nmodel: {{source: {tiny_model}{model_keys}}}\n",
            f"p{abs(hash(model_keys))}.yml",
        )
        return _by(run_doctor(p, environ={}))["gpu.capability"]

    bf16 = capability(", dtype: bfloat16")
    assert (
        bf16.level == "fail" and "7.5" in bf16.message and "8.0 for dtype bfloat16" in bf16.message
    )
    assert "model.dtype: float16" in bf16.fix
    assert capability(", dtype: float16").level == "pass"
    assert capability("").level == "pass"  # auto: vLLM falls back to a dtype the card has
    fp8 = capability(", quantization: fp8")
    assert fp8.level == "fail" and "8.0 for quantization fp8" in fp8.message
    assert capability(", quantization: awq").level == "pass"  # 7.5 is enough for AWQ


# -- memory semantics per engine and where GPU checks run -----------------------------------


def test_lmdeploy_is_planned_on_free_memory_vllm_on_the_total(write_profile, tiny_model):
    card = GpuInfo(0, "NVIDIA A100", 80 * GiB, 30 * GiB, "570.1", "12.8", (8, 0))
    got = {}
    for engine in ("vllm", "lmdeploy"):
        p = write_profile(
            f"name: t\nbackend: {engine}\nmodel: {{source: {tiny_model}}}\n", f"{engine}.yml"
        )
        got[engine] = _by(run_doctor(p, environ={}, gpu_query=lambda: ([card], None)))
    vllm, lmd = got["vllm"]["gpu.memory"], got["lmdeploy"]["gpu.memory"]
    assert vllm.level == "fail" and "73.60 GiB" in vllm.message  # 0.92 x 80 GiB
    assert lmd.level == "pass" and "free memory after weights" in lmd.message
    # at start LMDeploy needs the weights + its runtime; its KV cache is 0.8 of what is
    # then FREE (30 GiB less those), not of the total
    assert lmd.data["needs_bytes"] < 1 * GiB
    assert lmd.data["free_bytes"] == 30 * GiB


def test_gpu_checks_skip_engines_and_devices_without_an_nvidia_card(write_profile, tiny_model):
    no_gpu = lambda: ([], "nvidia-smi not found")  # noqa: E731
    p = write_profile(
        f"name: t\nbackend: lmdeploy\nmodel: {{source: {tiny_model}}}\n"
        "options: {device: ascend, backend: pytorch}\n"
    )
    gpu = _by(run_doctor(p, environ={}, gpu_query=no_gpu))["gpu"]
    assert gpu.level == "skip" and "ascend" in gpu.message
    cuda = write_profile(f"name: t\nbackend: lmdeploy\nmodel: {{source: {tiny_model}}}\n", "c.yml")
    assert _by(run_doctor(cuda, environ={}, gpu_query=no_gpu))["gpu"].level == "fail"


def test_compute_capability_is_read_through_nvml(monkeypatch):
    """With pynvml importable, NVML answers first (here a stand-in module with NVML's
    calls); a card whose NVML lacks the capability call is listed without it."""
    import types

    class Mem:
        total, free = 80 * GiB, 79 * GiB

    nvml = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: b"570.124",
        nvmlSystemGetCudaDriverVersion=lambda: 12080,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: Mem,
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
    )

    def cc(h):
        if h == 1:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return (9, 0)

    nvml.nvmlDeviceGetCudaComputeCapability = cc
    monkeypatch.setitem(__import__("sys").modules, "pynvml", nvml)
    gpus, why = query_gpus()
    assert why is None and [g.compute_cap for g in gpus] == [(9, 0), None]
    assert gpus[0].capability == "9.0" and gpus[0].cuda == "12.8" and gpus[0].driver == "570.124"


def test_sglang_fp8_needs_ampere(write_profile, tiny_model):
    t4 = GpuInfo(0, "Tesla T4", 16 * GiB, 15 * GiB, "550.54", "12.4", (7, 5))
    p = write_profile(
        f"name: t\nbackend: sglang\nmodel: {{source: {tiny_model}, quantization: fp8}}\n"
    )
    c = _by(run_doctor(p, environ={}, gpu_query=lambda: ([t4], None)))["gpu.capability"]
    assert c.level == "fail" and "sglang needs 8.0 for quantization fp8" in c.message


def test_serve_preflight_takes_a_4bit_7b_on_a_16gb_card(tmp_path, monkeypatch, write_profile):
    """Through serve's own preflight (preflight.check, the GPU from a fake nvidia-smi): the
    16-bit 7B is refused on a T4 with 14.5 GiB free, the same folder with bnb-4bit is not."""
    import struct

    from llmdeploy_cli import preflight
    from llmdeploy_cli.errors import PreflightError
    from llmdeploy_cli.resolve import resolve

    d = tmp_path / "llama-2-7b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(LLAMA2_7B))
    (d / "tokenizer.json").write_text("{}")
    n = SEVEN_B_FILES // 2
    header = json.dumps(
        {"model.weight": {"dtype": "F16", "shape": [n], "data_offsets": [0, 2 * n]}}
    ).encode()
    with open(d / "model.safetensors", "wb") as f:  # sparse: the header, then a hole
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 2 * n)
    _fake_smi(tmp_path, monkeypatch, "0, Tesla T4, 16384, 14848, 550.54, 7.5")
    verdict = {}
    for q in ("", "  quantization: bnb-4bit\n"):
        p = write_profile(
            f"name: t{len(q)}\nbackend: transformers\nmodel:\n  source: {d}\n{q}",
            f"q{len(q)}.yml",
        )
        try:
            preflight.check(resolve(p, {}), environ={}, check_running=False)
            verdict[bool(q)] = []
        except PreflightError as e:
            verdict[bool(q)] = [x.check for x in e.details]
    assert "gpu.memory" in verdict[False]
    assert "gpu.memory" not in verdict[True]
