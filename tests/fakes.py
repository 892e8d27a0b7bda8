"""Small helpers shared by test files: a free local port, the tiny GGUF model on disk, a
vLLM profile whose engine is the slow_chat stand-in (tests/serve/engines), and the
config.json of a Llama-3-8B-shaped model for memory plans."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket of this process while the block runs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def tiny_gguf_file(tiny_model: Path, tmp_path_factory, folder: str = "tiny-gguf") -> Path:
    """tests/tinymodel.py's model as an F32 GGUF (tests/gguf_model.py); skips the test when
    the gguf package is missing. Set LLMCTL_TINY_GGUF to a file path to reuse one."""
    import pytest

    pytest.importorskip("gguf", reason="writing a GGUF needs the gguf package (test extra)")
    from tests.gguf_model import write_gguf

    cached = os.environ.get("LLMCTL_TINY_GGUF")
    out = Path(cached) if cached else tmp_path_factory.mktemp(folder) / "tiny.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(tiny_model, out)


def slow_chat_profile(
    tmp_path: Path, fake_engine, tiny_model, name: str, extra: str = "", served_name="stand-in"
) -> Path:
    """A vLLM profile whose 'engine' is the slow_chat stand-in: ready in well under 1 s.
    `extra` is appended as top-level YAML."""
    p = tmp_path / f"{name}.yml"
    p.write_text(
        f"""name: {name}
backend: vllm
model:
  source: {tiny_model}
  served_name: {served_name}
server:
  host: 127.0.0.1
  port: auto
runtime:
  executable: {fake_engine("slow_chat")}
  engine_version: "0.33.0"
{extra}"""
    )
    return p


def llama3_8b_config() -> dict:
    """config.json of a Llama-3-8B-shaped model (GQA, 32 layers, bf16) for memory plans."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "num_hidden_layers": 32,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "torch_dtype": "bfloat16",
    }


def llamacpp_profile(
    folder: Path,
    name: str,
    gguf: Path | str,
    *,
    served_name: str | None = None,
    server: str = "",
    max_num_seqs: int = 2,
    smoke_max_tokens: int | None = None,
    extra: str = "",
) -> Path:
    """A llama.cpp profile for the tiny GGUF on CPU through the xllamacpp wheel (one thread,
    256-token context, no web UI). `server` is the YAML under `server:` (none when empty),
    `served_name` defaults to `name`; `extra` is appended last."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"name: {name}",
        "backend: llamacpp",
        "model:",
        f"  source: {gguf}",
        f"  served_name: {served_name or name}",
    ]
    if server:
        lines += ["server:", *(f"  {line}" for line in server.strip().splitlines())]
    lines += [
        "resources:",
        "  device: cpu",
        "  max_model_len: 256",
        f"  max_num_seqs: {max_num_seqs}",
        "options:",
        "  runtime: xllamacpp",
        "  threads: 1",
        "  webui: false",
    ]
    if smoke_max_tokens is not None:
        lines += ["smoke:", f"  max_tokens: {smoke_max_tokens}"]
    p = folder / f"{name}.yml"
    p.write_text("\n".join(lines) + "\n" + extra)
    return p


def fake_nvidia_smi(
    folder: Path, rows: str | None, fails: str | None = None, refuse_compute_cap: bool = False
) -> Path:
    """An nvidia-smi in `folder` answering --query-gpu like the real one (CSV, no units)
    with `rows`, or failing the way a driver that does not talk fails (`fails`, exit 9).
    refuse_compute_cap: an old nvidia-smi that refuses the compute_cap field (exit 2) and
    answers the first five columns only. Returns `folder`, to put first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    if fails is not None:
        body = f"cat <<'EOF'\n{fails}\nEOF\nexit 9\n"
    else:
        refuse = (
            'case "$1" in *compute_cap*) '
            "echo 'Field \"compute_cap\" is not a valid field to query.'; exit 2;; esac\n"
            if refuse_compute_cap
            else ""
        )
        cut = " | cut -d, -f1-5" if refuse_compute_cap else ""
        body = refuse + (
            f'case "$1" in --query-gpu=*) printf "%s\\n" \'{rows}\'{cut};; '
            "*) echo 'CUDA Version: 12.8';; esac\n"
        )
    smi.write_text("#!/bin/sh\n" + body)
    smi.chmod(0o755)
    return folder
