"""Prompts: exact token lengths with the model's tokenizer, words without, JSONL/ShareGPT."""

from __future__ import annotations

import json

import pytest

from llmdeploy_cli.bench.client import request_body
from llmdeploy_cli.bench.workload import file_workload, load_tokenizer, random_workload
from llmdeploy_cli.errors import UsageError


def test_random_prompts_have_exact_token_lengths(tiny_model):
    tok = load_tokenizer(tiny_model)
    assert tok is not None
    wl = random_workload(12, 24, 8, range_ratio=0.5, seed=3, tokenizer=tok)
    assert wl.source == "random-tokenizer" and wl.tokenizer_id == str(tiny_model)
    for p in wl.prompts:
        assert 12 <= p.prompt_len <= 36
        assert tok.count(p.messages[0]["content"]) == p.prompt_len
        assert 4 <= p.output_len <= 12


def test_words_without_a_tokenizer_say_so():
    wl = random_workload(3, 10, 5, seed=1)
    assert wl.source == "random-words"
    assert all(len(p.messages[0]["content"].split()) == 10 for p in wl.prompts)
    assert any("approximate" in n for n in wl.notes)
    assert random_workload(3, 10, 5, seed=1).prompts[0].messages == wl.prompts[0].messages


def test_no_tokenizer_in_a_dir_without_one(tmp_path):
    assert load_tokenizer(tmp_path) is None
    assert load_tokenizer(tmp_path / "missing") is None


def test_jsonl_dataset(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(
        '{"prompt": "hello there", "output_len": 7}\n\n'
        '{"messages": [{"role": "user", "content": "hi"}]}\n'
    )
    wl = file_workload(f, 5, None, seed=0)
    assert wl.source == "jsonl" and len(wl.prompts) == 5  # cycled to -n
    assert {p.output_len for p in wl.prompts} == {7, None}


def test_sharegpt_dataset_uses_reply_length(tmp_path, tiny_model):
    tok = load_tokenizer(tiny_model)
    f = tmp_path / "sg.json"
    data = [
        {"conversations": [{"from": "human", "value": "Say hello."},
                           {"from": "gpt", "value": "Hello! How can I help you today?"}]},
        {"conversations": [{"from": "gpt", "value": "no human turn"}]},
    ]  # fmt: skip
    f.write_text(json.dumps(data))
    wl = file_workload(f, None, None, tokenizer=tok)
    assert wl.source == "sharegpt" and len(wl.prompts) == 1
    p = wl.prompts[0]
    assert p.output_len == tok.count("Hello! How can I help you today?")
    assert p.prompt_len == tok.count("Say hello.")
    assert file_workload(f, None, 9).prompts[0].output_len == 9  # --output-len wins


@pytest.mark.parametrize("text", ["not json\n", "[1, 2", '{"nothing": 1}\n'])
def test_bad_dataset_is_a_usage_error(tmp_path, text):
    f = tmp_path / "bad.jsonl"
    f.write_text(text)
    with pytest.raises(UsageError):
        file_workload(f, 2, None)


def test_request_body_forces_length_and_asks_for_usage():
    p = random_workload(1, 3, 5).prompts[0]
    body = request_body("m", p, force_output_len=True)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 5 and body["min_tokens"] == 5 and body["ignore_eos"] is True
    assert "ignore_eos" not in request_body("m", p, force_output_len=False)


def test_what_counts_as_a_token_chunk():
    from llmdeploy_cli.bench.client import _delta_kinds

    assert _delta_kinds({"role": "assistant", "content": ""}) == (set(), "")
    assert _delta_kinds({"role": "assistant"}) == (set(), "")
    assert _delta_kinds({"content": "hi"}) == ({"content"}, "hi")
    assert _delta_kinds({"reasoning_content": "hm"})[0] == {"reasoning"}
    assert _delta_kinds({"reasoning": "hm"})[0] == {"reasoning"}
    call = {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}
    assert _delta_kinds(call) == ({"tool_calls"}, "f{}")


@pytest.mark.parametrize(
    "chunk",
    [b"not json", b'{"choices": [1]}', b'{"choices": [{"delta": "x"}]}', b'{"choices": {"a": 1}}'],
)
def test_a_malformed_chunk_fails_the_request_as_bad_stream(chunk):
    """The stream parser classifies what it cannot read; it never raises out of send()."""
    from llmdeploy_cli.bench.client import _Stream
    from llmdeploy_cli.bench.metrics import RequestRecord

    st = _Stream(RequestRecord(0))
    assert st.feed(chunk, 1.0) is False
    assert st.rec.error_class == "bad_stream" and chunk.decode() in st.rec.error


def test_bench_honours_proxy_variables_for_remote_urls_only(monkeypatch):
    """Like smoke: a remote server is reached through HTTP(S)_PROXY, loopback never is."""
    from llmdeploy_cli.bench.client import make_client
    from llmdeploy_cli.openai_http.clients import run

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")

    async def trust(url):
        async with make_client(4, 10.0, url=url) as s:
            return s.trust_env

    assert run(trust("http://127.0.0.1:8000/v1")) is False
    assert run(trust("https://gpu-box.example:8000/v1")) is True
