"""doctor's sampling sanity: the model's generation_config.json defaults beside what the
profile and the smoke send, and a warning for sampling values set while greedy decoding is
forced (do_sample: false / temperature 0), or the reverse."""

from __future__ import annotations

import json
import shutil

from llmdeploy_cli.models.doctor import run_doctor


def no_gpu():
    return [], "nvidia-smi not found"


def _model(tiny_model, tmp_path, gen: dict | None):
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    (d / "generation_config.json").unlink(missing_ok=True)
    if gen is not None:
        (d / "generation_config.json").write_text(json.dumps(gen))
    return d


def _checks(write_profile, model, extra: str = "", backend: str = "transformers"):
    p = write_profile(f"name: s\nbackend: {backend}\nmodel: {{source: {model}}}\n{extra}")
    return [
        c
        for c in run_doctor(p, environ={}, gpu_query=no_gpu).checks
        if c.check.startswith("sampling")
    ]


def test_defaults_are_shown_beside_profile_and_smoke(write_profile, tiny_model, tmp_path):
    gen = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20}
    (shown,) = _checks(write_profile, _model(tiny_model, tmp_path, gen))
    assert shown.check == "sampling" and shown.level == "pass"
    assert "do_sample=True, temperature=0.7, top_p=0.8, top_k=20" in shown.message
    assert "smoke sends temperature=0.0 (greedy" in shown.message
    assert shown.data["generation_config"] == gen


def test_sampling_values_with_greedy_forced_warn(write_profile, tiny_model, tmp_path):
    gen = {"do_sample": False, "temperature": 0.6, "top_p": 0.95}
    found = _checks(write_profile, _model(tiny_model, tmp_path, gen))
    warn = next(c for c in found if c.check == "sampling.model")
    assert warn.level == "warn" and "do_sample: false" in warn.message
    assert "temperature=0.6, top_p=0.95" in warn.message and warn.fix


def test_neutral_values_with_greedy_do_not_warn(write_profile, tiny_model, tmp_path):
    gen = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50}
    assert [c.check for c in _checks(write_profile, _model(tiny_model, tmp_path, gen))] == [
        "sampling"
    ]


def test_the_reverse_sampling_at_temperature_zero_warns(write_profile, tiny_model, tmp_path):
    gen = {"do_sample": True, "temperature": 0}
    found = _checks(write_profile, _model(tiny_model, tmp_path, gen))
    warn = next(c for c in found if c.check == "sampling.model")
    assert "temperature 0" in warn.message and "do_sample: false" in warn.fix


def test_profile_greedy_with_top_p_warns(write_profile, tmp_path):
    from tests.models.test_models_inspect import write_gguf

    g = tmp_path / "m.gguf"
    write_gguf(g)
    found = _checks(
        write_profile,
        g,
        "options:\n  parameters: {temperature: 0, top_p: 0.9, num_batch: 256}\n",
        backend="ollama",
    )
    shown = next(c for c in found if c.check == "sampling")
    assert "profile: temperature=0.0, top_p=0.9" in shown.message  # num_batch is not sampling
    warn = next(c for c in found if c.check == "sampling.profile")
    assert warn.level == "warn" and "top_p=0.9" in warn.message


def test_no_generation_config_is_said(write_profile, tiny_model, tmp_path):
    (shown,) = _checks(write_profile, _model(tiny_model, tmp_path, None))
    assert "generation_config.json): none" in shown.message
