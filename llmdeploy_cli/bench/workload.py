"""What the bench sends: random prompts of a given token length, or prompts from a file.

Random prompts are made with the model's own tokenizer when the profile points at a local
model directory (tokenizer.json through `tokenizers`, else transformers' AutoTokenizer,
both imported lazily), so each prompt is exactly `input_len` tokens before the chat
template. Without a tokenizer they are words, and the run says lengths are approximate.

Files: JSONL with one object a line (`{"prompt": "..."}` or `{"messages": [...]}`, optional
`"output_len"`/`"max_tokens"`), or ShareGPT JSON (a list of `{"conversations": [{"from":
"human", "value": ...}, {"from": "gpt", "value": ...}]}`; the first human turn is sent and
the reply's length is the output length unless `--output-len` is given).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llmdeploy_cli.errors import UsageError

WORDS = (
    "time person year way day thing man world life hand part child eye woman place work week "
    "case point government company number group problem fact be have do say get make go know "
    "take see come think look want give use find tell ask seem feel try leave call good new "
    "first last long great little own other old right big high different small large next "
    "early young important few public bad same able river mountain cloud engine signal"
).split()


@dataclass
class Prompt:
    messages: list[dict]
    prompt_len: int | None  # tokens by the local tokenizer (before the chat template)
    output_len: int | None  # max_tokens to ask for; None lets the server decide


@dataclass
class Workload:
    prompts: list[Prompt]
    source: str  # random-tokenizer | random-words | jsonl | sharegpt
    notes: list[str] = field(default_factory=list)
    tokenizer_id: str | None = None
    # random prompts: the token length each one was asked to have
    input_lens: list[int] | None = None
    # how prompt lengths were made (the result's llmctl.workload.sizing): by the local
    # tokenizer, by the server's token counts (size_words), or as words (approximate)
    sizing: dict | None = None


class Tokenizer:
    """The small part of a tokenizer the bench needs: encode, decode, vocab ids."""

    def __init__(self, encode: Callable, decode: Callable, ids: list[int], name: str):
        self.encode = encode
        self.decode = decode
        self.ids = ids
        self.name = name

    def count(self, text: str) -> int:
        return len(self.encode(text))


def load_tokenizer(path: str | Path | None) -> Tokenizer | None:
    """The tokenizer of a local model directory, or None when there is none to load."""
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        return None
    tj = p / "tokenizer.json"
    if tj.is_file():
        try:
            from tokenizers import Tokenizer as HfTok

            tok = HfTok.from_file(str(tj))
            special = set(tok.get_added_tokens_decoder())
            ids = [i for i in range(tok.get_vocab_size()) if i not in special]
            return Tokenizer(
                lambda s: tok.encode(s, add_special_tokens=False).ids,
                lambda ids: tok.decode(ids, skip_special_tokens=True),
                ids,
                str(p),
            )
        except Exception:  # noqa: BLE001 - fall through to transformers
            pass
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception:  # noqa: BLE001 - no tokenizer: words instead, said in the notes
        return None
    special = set(getattr(tok, "all_special_ids", []) or [])
    ids = [i for i in range(len(tok)) if i not in special]
    return Tokenizer(
        lambda s: tok.encode(s, add_special_tokens=False),
        lambda ids: tok.decode(ids, skip_special_tokens=True),
        ids,
        str(p),
    )


def _lengths(n: int, base: int, ratio: float, rng: random.Random) -> list[int]:
    lo = max(1, int(round(base * (1 - ratio))))
    hi = max(lo, int(round(base * (1 + ratio))))
    return [rng.randint(lo, hi) for _ in range(n)]


def exact_text(tok: Tokenizer, n: int, rng: random.Random) -> tuple[str, int]:
    """A text of exactly n tokens (decode random ids, re-encode, trim or top up)."""
    ids = [rng.choice(tok.ids) for _ in range(n)]
    text, got = "", 0
    for _ in range(16):
        text = tok.decode(ids)
        enc = tok.encode(text)
        got = len(enc)
        if got == n:
            break
        ids = enc[:n] if got > n else enc + [rng.choice(tok.ids) for _ in range(n - got)]
    return text, got


def random_workload(
    n: int,
    input_len: int,
    output_len: int | None,
    range_ratio: float = 0.0,
    seed: int = 0,
    tokenizer: Tokenizer | None = None,
) -> Workload:
    if not 0 <= range_ratio < 1:
        raise UsageError("--range-ratio must be in [0, 1)")
    rng = random.Random(seed)
    ins = _lengths(n, input_len, range_ratio, rng)
    outs = _lengths(n, output_len, range_ratio, rng) if output_len else [None] * n
    prompts = []
    for i_len, o_len in zip(ins, outs, strict=True):
        if tokenizer is not None:
            text, got = exact_text(tokenizer, i_len, rng)
        else:
            text, got = " ".join(rng.choice(WORDS) for _ in range(i_len)), None
        prompts.append(Prompt([{"role": "user", "content": text}], got, o_len))
    if tokenizer is not None:
        return Workload(
            prompts, "random-tokenizer", tokenizer_id=tokenizer.name, input_lens=ins,
            sizing={"by": "tokenizer", "tokenizer": tokenizer.name},
        )  # fmt: skip
    return Workload(
        prompts,
        "random-words",
        notes=[words_note(input_len)],
        input_lens=ins,
        sizing={"by": "words"},
    )


def words_note(input_len: int) -> str:
    return (
        "no local tokenizer (the profile has no model directory, or --url was used): "
        f"prompts are {input_len} words, so input lengths in tokens are approximate"
    )


def size_words(
    wl: Workload, tokens_per_word: float, template: float, seed: int, probes: int
) -> None:
    """Remake random-words prompts so each is about its asked token length by the server's
    own count: `tokens_per_word` and the chat template's `template` tokens were measured
    from `usage.prompt_tokens` of probe requests (loop.BenchLoop._size_words). In place:
    the sweep's later points and the worker processes send the same prompts."""
    if wl.input_lens is None or tokens_per_word <= 0:
        return
    rng = random.Random(seed + 1)
    wl.prompts = [
        Prompt(
            [{"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(words))}],
            None,
            p.output_len,
        )
        for p, words in (
            (p, max(1, round(n / tokens_per_word)))
            for p, n in zip(wl.prompts, wl.input_lens, strict=True)
        )
    ]
    base = wl.input_lens[0]
    wl.sizing = {
        "by": "server-usage",
        "tokens_per_word": round(tokens_per_word, 3),
        "template_tokens": round(template, 1),
        "probe_requests": probes,
    }
    wl.notes = [n for n in wl.notes if not n.startswith("no local tokenizer")]
    wl.notes.append(
        f"no local tokenizer: prompts sized by the server's own token counts ({probes} probe "
        f"requests: {tokens_per_word:.2f} tokens a word, {template:.0f} of chat template), so "
        f"{base} tokens is {max(1, round(base / tokens_per_word))} words; --tokenizer DIR "
        "makes them exact"
    )


def file_workload(
    path: str | Path,
    n: int | None,
    output_len: int | None,
    seed: int = 0,
    tokenizer: Tokenizer | None = None,
) -> Workload:
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read --dataset {p}: {e.strerror or e}") from None
    records, kind = _parse(raw, p)
    prompts = []
    for rec in records:
        pr = _record_prompt(rec, output_len, tokenizer)
        if pr is not None:
            prompts.append(pr)
    if not prompts:
        raise UsageError(
            f"--dataset {p}: no usable prompts",
            hint='JSONL lines like {"prompt": "..."} or ShareGPT "conversations"',
        )
    rng = random.Random(seed)
    rng.shuffle(prompts)
    if n is not None and n > len(prompts):
        prompts = [prompts[i % len(prompts)] for i in range(n)]
    elif n is not None:
        prompts = prompts[:n]
    notes = []
    if tokenizer is None:
        notes.append("no local tokenizer: prompt lengths come from the server's usage only")
    return Workload(prompts, kind, notes=notes, tokenizer_id=tokenizer.name if tokenizer else None)


def _parse(raw: str, p: Path) -> tuple[list, str]:
    text = raw.strip()
    if text.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"--dataset {p}: not valid JSON (line {e.lineno}): {e.msg}") from None
        kind = (
            "sharegpt"
            if any(isinstance(d, dict) and "conversations" in d for d in data)
            else "jsonl"
        )
        return data, kind
    records = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UsageError(f"--dataset {p}:{lineno}: not valid JSON: {e.msg}") from None
    kind = (
        "sharegpt"
        if any(isinstance(d, dict) and "conversations" in d for d in records)
        else "jsonl"
    )
    return records, kind


def _record_prompt(rec, output_len: int | None, tok: Tokenizer | None) -> Prompt | None:
    count = tok.count if tok is not None else None
    if isinstance(rec, str):
        rec = {"prompt": rec}
    if not isinstance(rec, dict):
        return None
    out = output_len or rec.get("output_len") or rec.get("max_tokens")
    if "conversations" in rec:
        conv = rec.get("conversations") or []
        turns = [c for c in conv if isinstance(c, dict)]
        for i, c in enumerate(turns):
            if c.get("from") in ("human", "user") and isinstance(c.get("value"), str):
                text = c["value"]
                reply = turns[i + 1].get("value") if i + 1 < len(turns) else None
                if out is None and isinstance(reply, str) and reply:
                    out = count(reply) if count else max(1, len(reply.split()))
                return Prompt(
                    [{"role": "user", "content": text}], count(text) if count else None, out
                )
        return None
    if isinstance(rec.get("messages"), list):
        msgs = rec["messages"]
        plen = None
        if count:
            plen = sum(count(m.get("content") or "") for m in msgs if isinstance(m, dict))
        return Prompt(msgs, plen, out)
    if isinstance(rec.get("prompt"), str):
        text = rec["prompt"]
        return Prompt([{"role": "user", "content": text}], count(text) if count else None, out)
    return None


__all__ = [
    "WORDS",
    "Prompt",
    "Tokenizer",
    "Workload",
    "file_workload",
    "load_tokenizer",
    "random_workload",
    "size_words",
]
