"""Model folders: a LoRA adapter mixed into a full model's folder is flagged, and its
tensors are not counted as the model's parameters."""

from __future__ import annotations

import json
import shutil

from llmdeploy_cli.models.completeness import model_dir_problems
from llmdeploy_cli.models.doctor import run_doctor
from llmdeploy_cli.models.inspect import inspect_model
from tests.models.test_models_inspect import _write_st


def _with_adapter(tiny_model, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    (d / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "org/base", "peft_type": "LORA", "r": 8})
    )
    _write_st(d / "adapter_model.safetensors", {"lora_A": ("F32", [64, 8])})
    return d


def test_adapter_in_a_full_model_is_flagged_and_not_counted(tiny_model, tmp_path):
    clean = inspect_model(tiny_model)
    d = _with_adapter(tiny_model, tmp_path)
    info = inspect_model(d)
    assert info.params == clean.params  # the adapter's 512 are not the model's
    assert info.weight_bytes == clean.weight_bytes
    assert info.adapter_files == ["adapter_config.json", "adapter_model.safetensors"]
    (flag,) = [p for p in model_dir_problems(d) if p.check == "model.adapter"]
    assert flag.level == "warn" and "LoRA adapter" in flag.message and "org/base" in flag.message
    assert "own folder" in flag.fix


def test_adapter_weights_alone_are_not_the_models_weights(tiny_model, tmp_path):
    d = _with_adapter(tiny_model, tmp_path)
    for st in d.glob("model*.safetensors"):
        st.unlink()
    idx = d / "model.safetensors.index.json"
    if idx.exists():
        idx.unlink()
    weights = [p for p in model_dir_problems(d) if p.check == "model.weights"]
    assert weights and weights[0].level == "fail" and "LoRA adapter" in weights[0].message


def test_doctor_shows_the_flag(tiny_model, tmp_path, write_profile):
    d = _with_adapter(tiny_model, tmp_path)
    p = write_profile(f"name: a\nbackend: transformers\nmodel: {{source: {d}}}\n")
    checks = run_doctor(p, environ={}, gpu_query=lambda: ([], "none")).checks
    assert [c.level for c in checks if c.check == "model.adapter"] == ["warn"]
    files = next(c for c in checks if c.check == "model.files")
    assert files.level == "pass" and f"{inspect_model(tiny_model).params:,} params" in files.message
