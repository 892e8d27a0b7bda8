"""Model folder completeness, inspection and offline lookup of hub ids."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from llmdeploy_cli.models.cache import find_local
from llmdeploy_cli.models.completeness import model_dir_problems
from llmdeploy_cli.models.inspect import inspect_model
from llmdeploy_cli.models.readers import read_gguf_meta, read_safetensors_header
from llmdeploy_cli.profile import profile_from_data
from llmdeploy_cli.yamlfile import SourceMap


def _profile(source: str, **extra):
    data = {"name": "m", "backend": "vllm", "model": {"source": source}, **extra}
    if "model" in extra:
        data["model"] = {"source": source, **extra["model"]}
    return profile_from_data(data, SourceMap("<test>"))


@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model, dst)
    return dst


def _write_st(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A valid safetensors file with zero-filled tensors."""
    size = {"F32": 4, "BF16": 2, "F16": 2, "I8": 1}
    header, off = {}, 0
    for name, (dt, shape) in tensors.items():
        n = size[dt]
        for d in shape:
            n *= d
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * off)


def write_gguf(path: Path, arch: str = "llama", ctx: int = 4096) -> None:
    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    kv = [
        s("general.architecture") + struct.pack("<I", 8) + s(arch),
        s(f"{arch}.context_length") + struct.pack("<I", 4) + struct.pack("<I", ctx),
        s("general.file_type") + struct.pack("<I", 4) + struct.pack("<I", 15),
        s("tokenizer.ggml.tokens")
        + struct.pack("<I", 9)
        + struct.pack("<IQ", 8, 100)
        + b"".join(s(f"t{i}") for i in range(100)),
    ]
    tensors = [
        s("tok_embd.weight")
        + struct.pack("<I", 2)
        + struct.pack("<QQ", 8, 100)
        + struct.pack("<IQ", 0, 0)
    ]
    body = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv)
    path.write_bytes(body + b"".join(tensors) + b"\0" * 64)


def test_tiny_model_is_complete_and_inspected(tiny_model):
    assert model_dir_problems(tiny_model) == []
    info = inspect_model(tiny_model)
    assert info.kind == "model" and info.format == "safetensors"
    assert info.architecture == "LlamaForCausalLM"
    assert info.context_length == 512
    assert info.params_source == "safetensors-headers"
    header = read_safetensors_header(tiny_model / "model.safetensors")
    expect = 0
    for name, t in header.items():
        if name.startswith("__"):
            continue
        n = 1
        for d in t["shape"]:
            n *= d
        expect += n
    assert info.params == expect > 0
    assert info.dtype == "float32"
    cfg = json.loads((tiny_model / "config.json").read_text())
    assert info.vocab_size == cfg["vocab_size"]


def test_exact_params_from_headers(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text('{"architectures": ["X"], "max_position_embeddings": 8}')
    (d / "tokenizer.json").write_text("{}")
    _write_st(d / "model.safetensors", {"a": ("BF16", [3, 5]), "b": ("BF16", [7])})
    info = inspect_model(d)
    assert info.params == 22
    assert info.weight_bytes == 44
    assert info.dtype == "bfloat16"


def test_missing_pieces_each_fail_with_a_fix(model_copy):
    (model_copy / "tokenizer.json").unlink()
    (model_copy / "config.json").unlink()
    checks = {p.check: p for p in model_dir_problems(model_copy)}
    assert set(checks) == {"model.config", "model.tokenizer"}
    assert all(p.level == "fail" and p.fix for p in checks.values())


def test_sentencepiece_tokenizer_is_enough(model_copy):
    (model_copy / "tokenizer.json").unlink()
    (model_copy / "tokenizer.model").write_bytes(b"sp")
    assert model_dir_problems(model_copy) == []


def test_index_with_missing_shard(model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "model-00001-of-00002.safetensors")
    index = {
        "metadata": {"total_size": 123},
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        },
    }
    (model_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    probs = model_dir_problems(model_copy)
    assert [p.check for p in probs] == ["model.weights"]
    assert "model-00002-of-00002.safetensors" in probs[0].message
    assert "pull" in probs[0].fix


def test_truncated_safetensors(model_copy):
    f = model_copy / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    probs = model_dir_problems(model_copy)
    assert probs and probs[0].check == "model.weights" and "cut short" in probs[0].message


def test_no_weights(model_copy):
    (model_copy / "model.safetensors").unlink()
    probs = model_dir_problems(model_copy)
    assert [p.check for p in probs] == ["model.weights"]


def test_bin_weights_are_enough(model_copy):
    (model_copy / "model.safetensors").unlink()
    (model_copy / "pytorch_model.bin").write_bytes(b"x" * 10)
    assert model_dir_problems(model_copy) == []
    assert inspect_model(model_copy).format == "bin"


def test_missing_path(tmp_path):
    probs = model_dir_problems(tmp_path / "nope")
    assert probs[0].level == "fail" and "does not exist" in probs[0].message


def test_lora_adapter_is_named_with_its_base(tmp_path):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct", "peft_type": "LORA"})
    )
    _write_st(d / "adapter_model.safetensors", {"lora_A": ("F32", [4, 2])})
    (probs,) = model_dir_problems(d)
    assert probs.check == "model.adapter" and probs.level == "fail"
    assert "Qwen/Qwen2.5-7B-Instruct" in probs.message
    assert "merge" in probs.fix
    info = inspect_model(d)
    assert info.kind == "lora-adapter" and info.base_model == "Qwen/Qwen2.5-7B-Instruct"
    assert info.params == 8


def test_gguf_file_and_need_gguf(tmp_path, tiny_model):
    g = tmp_path / "m.gguf"
    write_gguf(g)
    assert model_dir_problems(g, need_gguf=True) == []
    meta = read_gguf_meta(g)
    assert meta["general.architecture"] == "llama" and meta["gguf.params"] == 800
    info = inspect_model(g)
    assert (info.format, info.context_length, info.vocab_size, info.params, info.dtype) == (
        "gguf",
        4096,
        100,
        800,
        "Q4_K_M",
    )
    probs = model_dir_problems(tiny_model, need_gguf=True)
    assert probs[0].check == "model.gguf" and "convert" in probs[0].fix
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\0\0\0")
    assert model_dir_problems(bad, need_gguf=True)[0].level == "fail"


# -- find_local ----------------------------------------------------------------------------


def _hf_cache(root: Path, repo: str, commit: str, ref: str | None = "main") -> Path:
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    if ref:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return snap


def test_find_local_hf_cache_honours_refs_and_revision(tmp_path):
    cache = tmp_path / "hub"
    main = _hf_cache(cache, "Org/Model-1.5B", "a" * 40)
    other = _hf_cache(cache, "Org/Model-1.5B", "b" * 40, ref="v2")
    env = {"HF_HUB_CACHE": str(cache)}
    assert find_local("Org/Model-1.5B", _profile("Org/Model-1.5B"), env) == main
    prof = _profile("Org/Model-1.5B", model={"revision": "v2"})
    assert find_local("Org/Model-1.5B", prof, env) == other
    prof = _profile("Org/Model-1.5B", model={"revision": "b" * 40})
    assert find_local("Org/Model-1.5B", prof, env) == other
    prof = _profile("Org/Model-1.5B", model={"revision": "nope"})
    assert find_local("Org/Model-1.5B", prof, env) is None
    assert find_local("Org/Other", _profile("Org/Other"), env) is None


def test_find_local_hf_home_and_profile_cache_dir(tmp_path):
    snap = _hf_cache(tmp_path / "home" / "hub", "o/m", "c" * 40)
    assert find_local("o/m", _profile("o/m"), {"HF_HOME": str(tmp_path / "home")}) == snap
    prof = _profile("o/m", hub={"cache_dir": str(tmp_path / "home")})
    assert find_local("o/m", prof, {"HOME": str(tmp_path)}) == snap


def test_find_local_xinference_home(tmp_path):
    snap = _hf_cache(tmp_path / "xi" / "huggingface" / "hub", "o/m", "d" * 40)
    assert find_local("o/m", _profile("o/m"), {"XINFERENCE_HOME": str(tmp_path / "xi")}) == snap


def test_find_local_modelscope(tmp_path):
    folder = tmp_path / "ms" / "hub" / "models" / "Qwen" / "Qwen2___5-0___5B"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    prof = _profile("Qwen/Qwen2.5-0.5B", hub={"source": "modelscope"})
    assert find_local("Qwen/Qwen2.5-0.5B", prof, {"MODELSCOPE_CACHE": str(tmp_path / "ms")}) == (
        folder
    )


def write_ollama_store(
    store: Path, name: str = "qwen2.5", tag: str = "0.5b", registry: str = "registry.example"
) -> Path:
    """An Ollama model store holding `name:tag`: its manifest and one GGUF blob (returned)."""
    man = store / "manifests" / registry / "library" / name / tag
    man.parent.mkdir(parents=True)
    digest = "ab" * 32
    man.write_text(
        json.dumps(
            {
                "layers": [
                    {
                        "mediaType": "application/vnd.ollama.image.model",
                        "digest": f"sha256:{digest}",
                    }
                ]
            }
        )
    )
    blob = store / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir()
    write_gguf(blob)
    return blob


def test_find_local_ollama_store(tmp_path):
    store = tmp_path / "ollama"
    blob = write_ollama_store(store, registry="registry.example")
    data = {"name": "o", "backend": "ollama", "model": {"source": "qwen2.5:0.5b"}}
    prof = profile_from_data(data, SourceMap("<test>"))
    assert find_local("qwen2.5:0.5b", prof, {"OLLAMA_MODELS": str(store)}) == blob
    assert find_local("qwen2.5:7b", prof, {"OLLAMA_MODELS": str(store)}) is None


def test_find_local_plain_path(tiny_model):
    assert find_local(str(tiny_model), _profile(str(tiny_model)), {}) == tiny_model
