"""Is a model folder complete? `model_dir_problems` is what preflight and `doctor` call.

It returns only warnings and failures (an empty list means the folder is complete), each
with the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import Problem
from llmdeploy_cli.models.readers import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    INDEX_FILES,
    HeaderError,
    is_adapter_file,
    is_gguf,
    read_gguf_meta,
    read_json,
    safetensors_stats,
)

if TYPE_CHECKING:  # pragma: no cover
    pass

# Files that make up a tokenizer, by family. Any one group complete is enough.
TOKENIZER_SETS: tuple[tuple[str, ...], ...] = (
    ("tokenizer.json",),  # HF fast tokenizer
    ("tokenizer.model",),  # sentencepiece (Llama 1/2, Mistral, Gemma)
    ("spiece.model",),  # sentencepiece (T5)
    ("vocab.json", "merges.txt"),  # GPT-2 style BPE
    ("vocab.txt",),  # WordPiece (BERT, embedding models)
    ("qwen.tiktoken",),  # Qwen 1
    ("tokenizer.tiktoken",),
    ("sentencepiece.bpe.model",),  # XLM-R family (rerankers)
)


def tokenizer_files(path: Path) -> list[str] | None:
    """The first complete tokenizer file set in a folder, or None."""
    for group in TOKENIZER_SETS:
        if all((path / name).is_file() for name in group):
            return list(group)
    return None


def adapter_base(path: Path) -> str | None:
    cfg, _ = read_json(path / "adapter_config.json")
    if cfg is None:
        return None
    return cfg.get("base_model_name_or_path") or None


def model_dir_problems(path: Path, *, need_gguf: bool = False) -> list[Problem]:
    """Why `path` is not a complete model (empty list: it is).

    Complete: config.json, a tokenizer (tokenizer.json, or tokenizer.model / vocab files),
    and weights: safetensors with an index whose every shard exists (or a single
    model.safetensors / other *.safetensors), or .bin files, or GGUF. With `need_gguf`
    (llama.cpp, Ollama) a GGUF file is required: the path itself or a *.gguf in the folder.
    A LoRA adapter folder fails with its base model and the advice to merge.
    """
    path = Path(path)
    if not path.exists():
        return [
            Problem(
                "model.files",
                "fail",
                f"{path} does not exist",
                fix="fix model.source, or download it first: llmctl pull PROFILE",
            )
        ]
    if path.is_file():
        return _file_problems(path, need_gguf)
    if not path.is_dir():
        return [Problem("model.files", "fail", f"{path} is neither a file nor a folder")]

    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        base = adapter_base(path) or "(adapter_config.json names no base model)"
        return [
            Problem(
                "model.adapter",
                "fail",
                f"{path} is a LoRA adapter, not a model; it needs the base model {base}",
                fix=(
                    "merge it into the base (peft: PeftModel.from_pretrained(base, adapter)"
                    ".merge_and_unload().save_pretrained(DIR)) and serve DIR, or serve the "
                    "base model and load the adapter with the engine's LoRA option"
                ),
                data={"base_model": adapter_base(path)},
            )
        ]

    ggufs = sorted(p for p in path.glob("*.gguf") if p.is_file())
    if need_gguf:
        if not ggufs:
            return [
                Problem(
                    "model.gguf",
                    "fail",
                    f"{path} holds no .gguf file, and this engine loads only GGUF",
                    fix="convert it with llama.cpp's convert_hf_to_gguf.py (and quantize), "
                    "or point model.source at a .gguf file",
                )
            ]
        probs: list[Problem] = []
        for g in ggufs:
            probs += _file_problems(g, True)
        return probs

    problems: list[Problem] = []
    cfg, why = read_json(path / "config.json")
    if cfg is None and not ggufs:
        problems.append(
            Problem(
                "model.config",
                "fail",
                f"config.json is {why} in {path}",
                fix="download the model again (llmctl pull PROFILE), or copy config.json "
                "from the model's repository at the same revision",
            )
        )
    if not ggufs and tokenizer_files(path) is None:
        problems.append(
            Problem(
                "model.tokenizer",
                "fail",
                f"no tokenizer files in {path} (tokenizer.json, tokenizer.model, "
                "vocab.json + merges.txt, or vocab.txt)",
                fix="download the tokenizer files with the model (llmctl pull PROFILE), or "
                "set model.tokenizer to a folder or hub id that has them",
            )
        )
    problems += _weight_problems(path, ggufs)
    return problems + mixed_adapter(path)


def mixed_adapter(path: Path) -> list[Problem]:
    """A LoRA adapter's files inside a full model's folder: the engine loads the base
    weights and ignores the adapter (it is not applied), and its tensors are not the
    model's (inspect does not count them)."""
    names = [n for n in (ADAPTER_CONFIG, *ADAPTER_WEIGHTS) if (path / n).is_file()]
    if not names or not (path / "config.json").is_file():
        return []
    base = adapter_base(path)
    return [
        Problem(
            "model.adapter",
            "warn",
            f"{path} holds a full model and a LoRA adapter ({', '.join(names)}"
            + (f", for {base}" if base else "")
            + "): the engine serves the full model without the adapter",
            fix="move the adapter to its own folder; to serve it, merge it into the base "
            "(peft: PeftModel.from_pretrained(base, adapter).merge_and_unload()"
            ".save_pretrained(DIR)) or load it with the engine's LoRA option",
            data={"adapter_files": names, "base_model": base},
        )
    ]


def _file_problems(path: Path, need_gguf: bool) -> list[Problem]:
    if path.suffix == ".gguf" or is_gguf(path):
        try:
            read_gguf_meta(path, tensors=False)
        except (HeaderError, OSError) as e:
            return [
                Problem(
                    "model.gguf",
                    "fail",
                    f"{path} is not a readable GGUF file: {e}",
                    fix="download or convert the file again (it may be cut short)",
                )
            ]
        return []
    if need_gguf:
        return [
            Problem(
                "model.gguf",
                "fail",
                f"{path} is not a GGUF file",
                fix="point model.source at a .gguf file",
            )
        ]
    return [
        Problem(
            "model.files",
            "fail",
            f"{path} is a single file; this engine loads a model folder",
            fix="point model.source at the folder holding config.json and the weights",
        )
    ]


def _weight_problems(path: Path, ggufs: list[Path]) -> list[Problem]:
    for index_name in INDEX_FILES:
        index_path = path / index_name
        if not index_path.exists():
            continue
        index, why = read_json(index_path)
        if index is None or not isinstance(index.get("weight_map"), dict):
            return [
                Problem(
                    "model.weights",
                    "fail",
                    f"{index_name} is {why or 'without a weight_map'}",
                    fix="download the model again (llmctl pull PROFILE)",
                )
            ]
        shards = sorted(set(index["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            return [
                Problem(
                    "model.weights",
                    "fail",
                    f"{len(missing)} of {len(shards)} weight shards named in {index_name} "
                    f"are missing: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}",
                    fix="finish the download (llmctl pull PROFILE resumes where it stopped)",
                    data={"missing": missing},
                )
            ]
        return _truncation_problems(path, shards)

    sts = sorted(
        p.name for p in path.glob("*.safetensors") if p.is_file() and not is_adapter_file(p.name)
    )
    if sts:
        return _truncation_problems(path, sts)
    bins = [
        p
        for p in path.glob("*.bin")
        if p.is_file() and p.name != "training_args.bin" and not is_adapter_file(p.name)
    ]
    if bins or ggufs or any(path.glob("*.pt")) or any(path.glob("*.pth")):
        return []
    dangling = [p.name for p in path.iterdir() if p.is_symlink() and not p.exists()]
    extra = f" ({len(dangling)} broken links: an interrupted download?)" if dangling else ""
    return [
        Problem(
            "model.weights",
            "fail",
            f"no weights in {path} (no *.safetensors, *.bin or *.gguf"
            + (", only a LoRA adapter's" if any(is_adapter_file(n) for n in _names(path)) else "")
            + f"){extra}",
            fix="download the model (llmctl pull PROFILE), or point model.source at the "
            "folder that has the weights",
        )
    ]


def _names(path: Path) -> list[str]:
    return [p.name for p in path.iterdir()]


def _truncation_problems(path: Path, names: list[str]) -> list[Problem]:
    bad = []
    for name in names:
        if not name.endswith(".safetensors"):
            continue
        p = path / name
        try:
            _, need = safetensors_stats(p)
            size = p.stat().st_size
        except (HeaderError, OSError) as e:
            bad.append(f"{name}: {e}")
            continue
        if size < need:
            bad.append(f"{name}: {size} bytes, its header needs {need}")
    if not bad:
        return []
    return [
        Problem(
            "model.weights",
            "fail",
            f"{len(bad)} safetensors file(s) are cut short or damaged: {'; '.join(bad[:3])}",
            fix="download them again (llmctl pull PROFILE; delete the damaged files first)",
            data={"damaged": bad},
        )
    ]


def model_failures(path: Path, backend=None) -> list[Problem]:
    """The failures of `model_dir_problems` for the files `backend` loads (GGUF-only engines
    need a GGUF file): what serve refuses before it spawns, and what its diagnosis names."""
    from llmdeploy_cli.models.facts import needs_gguf

    return [p for p in model_dir_problems(path, need_gguf=needs_gguf(backend)) if p.level == "fail"]
