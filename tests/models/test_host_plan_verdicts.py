"""Plan for CPU profiles: host RAM needed (weights, KV, the backend's base process) against
RAM available; embedding models get weights + a batch's activations and no KV cache; every
"cannot plan" case exits 2, "does not fit" exits 3."""

from __future__ import annotations

import json

import pytest

from llmdeploy_cli.cli.app import main
from llmdeploy_cli.memory_rules import MiB
from llmdeploy_cli.models.plan import PlanInputs, host_plan


@pytest.fixture
def no_nvidia(tmp_path, monkeypatch):
    """A PATH without nvidia-smi (and python's own folder, for nothing else is needed)."""
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_cpu_chat_profile_gets_a_host_ram_plan(write_profile, tiny_model, capsys, no_nvidia):
    p = write_profile(
        f"""
        name: cpu
        backend: transformers
        model: {{source: {tiny_model}}}
        resources: {{device: cpu}}
        """
    )
    assert main(["plan", str(p), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"] == "cpu" and doc["task"] == "chat"
    assert doc["base_bytes"] == 848 * MiB and doc["base_source"].startswith("measured")
    assert doc["needs_bytes"] == doc["weights_bytes"] + doc["kv_bytes"] + doc["base_bytes"]
    assert doc["kv_bytes"] > 0 and doc["activations_bytes"] == 0
    assert doc["available_bytes"] > 0 and doc["fits"] is True
    assert main(["plan", str(p)]) == 0
    text = capsys.readouterr().out
    assert "host RAM" in text and "RAM available" in text and "KV cache" in text


def test_no_gpu_and_a_cpu_engine_plans_the_cpu(write_profile, tiny_model, capsys, no_nvidia):
    p = write_profile(f"name: t\nbackend: transformers\nmodel: {{source: {tiny_model}}}\n")
    assert main(["plan", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "cpu"


def test_embedding_models_get_activations_not_kv(write_profile, tiny_model, capsys, no_nvidia):
    p = write_profile(
        f"""
        name: emb
        backend: infinity
        model: {{source: {tiny_model}, task: embedding}}
        resources: {{device: cpu, max_num_seqs: 8}}
        """
    )
    assert main(["plan", str(p), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["task"] == "embedding" and doc["kv_bytes"] == 0
    assert doc["max_num_seqs"] == 8 and doc["max_model_len"] == 512  # min(context, 512)
    assert doc["activations_bytes"] > 0
    assert "no KV cache" in doc["rule"]


def test_host_plan_that_does_not_fit(tiny_model):
    from llmdeploy_cli.models.readers import read_json

    cfg, _ = read_json(tiny_model / "config.json")
    hp = host_plan(PlanInputs(engine="transformers", config=cfg), "chat", available=1)
    assert hp.fits is False and hp.needs_bytes > 848 * MiB


def test_cli_exit_3_when_the_cpu_plan_does_not_fit(
    write_profile, tiny_model, monkeypatch, capsys, no_nvidia
):
    import llmdeploy_cli.models.host_plan as hp

    monkeypatch.setattr(hp, "ram_available", lambda: 100 * MiB)
    p = write_profile(
        f"name: t\nbackend: transformers\nmodel: {{source: {tiny_model}}}\n"
        "resources: {device: cpu}\n"
    )
    assert main(["plan", str(p)]) == 3
    assert "fits            NO" in capsys.readouterr().out


def test_every_cannot_plan_case_exits_2(write_profile, tiny_model, tmp_path, capsys, no_nvidia):
    gpu_only = write_profile(f"name: t\nbackend: vllm\nmodel: {{source: {tiny_model}}}\n", "v.yml")
    assert main(["plan", str(gpu_only)]) == 2  # no GPU, an engine that needs one
    assert "--gpu-mem" in capsys.readouterr().err
    absent = write_profile(
        f"name: t\nbackend: vllm\nmodel: {{source: {tmp_path / 'absent'}}}\n", "a.yml"
    )
    assert main(["plan", str(absent), "--gpu-mem", "24GiB"]) == 2  # no config.json
    assert main(["plan", str(gpu_only), "--gpu-mem", "lots"]) == 2  # not a size
