"""A tiny chat model built on the fly (DESIGN.md §7): no download, a few seconds on CPU.

A byte-level BPE trained on a fixed corpus, wrapped as PreTrainedTokenizerFast with a
ChatML chat template, and a 2-layer Llama (hidden 64) saved under torch.manual_seed(0).
The weights are random, so the text is gibberish: tests assert protocol facts, never text.

`python -m tests.tinymodel DIR` builds it from the command line (the demo uses this).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How can I help you today?",
    "llmctl serves a model from one YAML profile and checks that it answers.",
    "Say hello in one short sentence, please.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    'The answer is 42. JSON looks like {"ok": true, "n": [1, 2, 3]}.',
] * 20

VOCAB_SIZE = 512
MARKER = ".llmctl-tiny-model"  # written last: a directory without it is incomplete


def build_tiny_model(out: str | Path) -> Path:
    """Write config, weights and tokenizer to `out` (idempotent) and return the path."""
    out = Path(out)
    if (out / MARKER).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(out)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    (out / MARKER).write_text(json.dumps({"built_by": "tests/tinymodel.py"}) + "\n")
    return out


if __name__ == "__main__":  # pragma: no cover
    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))
