"""An engine option that a common key sets (`options.num_ctx`, `options.batch_size`,
`options.gpu_memory_utilization`, ...) is refused with "use resources.X", and the
suggestion itself passes validate on that backend; a common key the backend cannot honour
is never suggested."""

from __future__ import annotations

import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.backend import COMMON_KEYS, common_key_for
from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.resolve import resolve

# A value every backend that honours the key takes.
VALUES = {
    "resources.gpu_memory_utilization": "0.8",
    "resources.max_model_len": "2048",
    "resources.max_num_seqs": "4",
    "resources.max_num_batched_tokens": "2048",
    "resources.tensor_parallel": "2",
    "resources.pipeline_parallel": "2",
    "model.served_name": "served",
    "server.api_key_env": "MY_KEY",
}


def _model(name: str) -> str:
    return {"ollama": "qwen2.5:0.5b", "llamacpp": "/models/m.gguf"}.get(name, "org/model")


def _profile(tmp_path, backend: str, body: str):
    p = tmp_path / f"{backend}.yml"
    p.write_text(f"name: t\nbackend: {backend}\nmodel:\n  source: {_model(backend)}\n" + body)
    return p


def _cases():
    for name in registry.names():
        backend = registry.get(name)
        names = dict(backend.option_keys)
        for key in COMMON_KEYS:
            names.setdefault(key.rsplit(".", 1)[-1], key)
        for option, key in sorted(names.items()):
            if option in backend.Options.model_fields or key not in VALUES:
                continue
            yield name, option, key


@pytest.mark.parametrize(("backend", "option", "key"), list(_cases()))
def test_option_of_a_common_key_names_the_key(tmp_path, backend, option, key):
    be = registry.get(backend)
    p = _profile(tmp_path, backend, f"options:\n  {option}: {VALUES[key]}\n")
    with pytest.raises(ProfileError) as e:
        resolve(p, {}, engine_version=be.newest_known)
    issue = next(i for i in e.value.issues if i.loc[:2] == ("options", option))
    assert "its options:" not in (issue.hint or "")
    assert key in issue.message or key in (issue.hint or "")
    if key in be.supports:
        assert issue.hint.startswith(f"use {key} instead")
        section, leaf = key.split(".")
        ok = _profile(tmp_path, backend, f"{section}:\n  {leaf}: {VALUES[key]}\n")
        try:
            resolve(ok, {"MY_KEY": "k"}, engine_version=be.newest_known)
        except ProfileError as err:  # the suggestion must not be refused for its key
            assert not [i for i in err.issues if i.loc[:2] == (section, leaf)], err.issues
    else:
        assert "cannot honour" in issue.hint and f"use {key}" not in issue.hint


def test_the_named_examples():
    assert common_key_for(registry.get("ollama"), "num_ctx") == "resources.max_model_len"
    assert common_key_for(registry.get("infinity"), "batch_size") == "resources.max_num_seqs"
    assert (
        common_key_for(registry.get("vllm"), "gpu_memory_utilization")
        == "resources.gpu_memory_utilization"
    )
    assert common_key_for(registry.get("vllm"), "nonsense") is None


def test_a_plain_typo_still_gets_its_close_match(tmp_path):
    p = _profile(tmp_path, "vllm", "options:\n  enforce_eagre: true\n")
    with pytest.raises(ProfileError) as e:
        resolve(p, {}, engine_version="0.33.0")
    assert "did you mean 'enforce_eager'" in e.value.issues[0].hint


@pytest.mark.parametrize(("value", "ok"), [("awq", True), ("bitsandbytes", True), ("awqq", False)])
def test_vllm_quantization_value_is_checked_at_validate(tmp_path, value, ok):
    p = tmp_path / "v.yml"
    p.write_text(f"name: t\nbackend: vllm\nmodel:\n  source: org/model\n  quantization: {value}\n")
    if ok:
        resolve(p, {}, engine_version="0.33.0")
        return
    with pytest.raises(ProfileError) as e:
        resolve(p, {}, engine_version="0.33.0")
    issue = e.value.issues[0]
    assert issue.loc == ("model", "quantization") and "'awqq'" in issue.message
    assert "awq_marlin" in issue.hint


@pytest.mark.parametrize("kind", ["safetensors-file", "hf-folder"])
def test_ollama_refuses_a_model_that_is_not_gguf_at_validate(tmp_path, kind):
    if kind == "safetensors-file":
        src = tmp_path / "model.safetensors"  # need not exist: the name says it
    else:
        src = tmp_path / "Qwen2.5-0.5B-Instruct"
        src.mkdir()
        (src / "config.json").write_text("{}")
        (src / "model.safetensors").write_bytes(b"")
    p = tmp_path / "o.yml"
    p.write_text(f"name: o\nbackend: ollama\nmodel:\n  source: {src}\n")
    with pytest.raises(ProfileError) as e:
        resolve(p, {}, engine_version="0.32.15")
    issue = e.value.issues[0]
    assert issue.loc == ("model", "source") and "loads GGUF files" in issue.message
    assert ".gguf" in issue.hint


def test_ollama_takes_a_gguf_a_folder_of_them_and_a_pull_name(tmp_path):
    folder = tmp_path / "ggufs"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "m-q4.gguf").write_bytes(b"GGUF")
    for src in (tmp_path / "m.gguf", folder, "qwen2.5:0.5b"):
        p = tmp_path / "o.yml"
        p.write_text(f"name: o\nbackend: ollama\nmodel:\n  source: {src}\n")
        resolve(p, {}, engine_version="0.32.15")
