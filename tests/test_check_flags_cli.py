"""`llmctl render --check-flags`: the installed engine's parser, else llmctl's snapshot."""

from __future__ import annotations

import json
import sys

from llmdeploy_cli.cli.app import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_installed_engine_parser_is_read_and_cached(write_profile, capsys, _isolated_state):
    # transformers is installed in the test environment itself: a real installed engine.
    path = write_profile(
        f"""
        name: t
        backend: transformers
        model: {{source: /models/tiny}}
        runtime: {{venv: {sys.prefix}}}
        resources: {{device: cpu}}
        """
    )
    code, out, err = run(capsys, "render", str(path), "--check-flags", "--json")
    assert code == 0, err
    flags = json.loads(out)["flags"]
    assert flags["checked"] and flags["problems"] == []
    assert flags["source"].startswith("installed transformers")
    cached = list((_isolated_state / "flags").glob("transformers-*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["engine"] == "transformers"


def test_abbreviation_and_bad_choice_are_refused(write_profile, capsys):
    path = write_profile(
        """
        name: v
        backend: vllm
        model: {source: Qwen/Qwen2.5-0.5B}
        runtime: {engine_version: 0.33.0}
        extra_args: ["--gpu-mem", "0.5", "--dtype", "fp9"]
        """
    )
    code, _, err = run(capsys, "render", str(path), "--check-flags")
    assert code == 2
    assert "--gpu-mem is not an option of vllm 0.33.0" in err
    assert "nearest real option: --gpu-memory-utilization" in err
    assert "--dtype 'fp9'" in err
    code, out, _ = run(capsys, "render", str(path), "--check-flags", "--json")
    doc = json.loads(out)  # one document: the error envelope
    assert code == 2 and {d["flag"] for d in doc["error"]["details"]} == {"--gpu-mem", "--dtype"}


def test_swap_space_is_exact_before_0_18(write_profile, capsys):
    path = write_profile(
        """
        name: v
        backend: vllm
        model: {source: Qwen/Qwen2.5-0.5B}
        runtime: {engine_version: 0.17.1}
        options: {swap_space: 4}
        """
    )
    code, out, err = run(capsys, "render", str(path), "--check-flags")
    assert code == 0, err
    assert "--swap-space 4" in out and "all exact" in err


def test_unknown_version_cannot_be_checked(write_profile, capsys):
    path = write_profile(
        """
        name: v
        backend: vllm
        model: {source: Qwen/Qwen2.5-0.5B}
        runtime: {engine_version: 0.20.0}
        """
    )
    code, _, err = run(capsys, "render", str(path), "--check-flags")
    assert code == 3
    assert "cannot check flags" in err and "0.17.1, 0.33.0" in err
