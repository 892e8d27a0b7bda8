"""Every registered backend declares every capability, consistently with what it renders.

The contract (tests/backends/contract.py) is also run on the third-party plugin of
tests/plugin_backend, in the subprocess where that plugin is installed.
"""

from __future__ import annotations

import pytest

from llmdeploy_cli import registry
from llmdeploy_cli.backend import Backend
from llmdeploy_cli.capabilities import (
    NAMES,
    NOT_SUPPORTED,
    UNDECLARED,
    ModelFormat,
    Task,
    routes,
    supported,
)
from tests.backends.contract import contract_problems, declaration_problems, describe


@pytest.mark.parametrize("name", registry.names())
def test_backend_keeps_the_capability_contract(name):
    problems = contract_problems(name)
    assert not problems, "\n".join(problems) + "\n" + describe(name)


def test_the_base_class_declares_nothing():
    for cap in NAMES:
        assert getattr(Backend, cap) is UNDECLARED


def test_an_undeclared_capability_fails_the_contract_and_the_commands():
    from llmdeploy_cli.errors import LlmctlError

    class Half(Backend):
        name = "half"
        default_port = 1
        executable = "half"
        newest_known = "1"
        model_formats = frozenset({ModelFormat.GGUF})

    problems = declaration_problems(Half())
    assert "half: tasks is UNDECLARED" in problems
    assert "half: memory is UNDECLARED" in problems
    assert not any("model_formats" in p for p in problems)
    with pytest.raises(LlmctlError, match="does not declare its container capability") as e:
        Half().capability("container")
    assert "writing-a-backend.md" in e.value.hint


def test_not_supported_is_a_declaration():
    class Lacks(Backend):
        name = "lacks"
        container = NOT_SUPPORTED

    assert Lacks().capability("container") is NOT_SUPPORTED
    assert not supported(NOT_SUPPORTED) and not supported(UNDECLARED)
    assert not NOT_SUPPORTED and repr(NOT_SUPPORTED) == "NOT_SUPPORTED"


def test_routes_of_tasks():
    assert routes({Task.EMBEDDINGS, Task.CHAT}) == ("/v1/chat/completions", "/v1/embeddings")
    assert routes(["embedding", "rerank"]) == ("/v1/embeddings", "/v1/rerank")  # profile tasks
    assert routes([]) == ()
    # a profile task is one the engine declares
    for name in registry.names():
        tasks = registry.get(name).tasks
        assert Task.CHAT in tasks or Task.EMBEDDINGS in tasks, name


def test_declarations_agree_with_the_old_tables():
    """What the lists of engine names in the core said, now said by each backend."""
    get = registry.get
    assert {n for n in registry.names() if ModelFormat.GGUF in get(n).model_formats} == {
        "llamacpp",
        "ollama",
    }
    # every engine installs (issue 18): llama.cpp as the xllamacpp wheel, Ollama as its
    # release archive
    assert {n for n in registry.names() if supported(get(n).install)} == {
        "xinference",
        "vllm",
        "lmdeploy",
        "sglang",
        "transformers",
        "infinity",
        "llamacpp",
        "ollama",
    }
    images = {
        n: get(n).container.image_template
        for n in registry.names()
        if get(n).container.image_template
    }
    assert images == {
        "vllm": "vllm/vllm-openai:v{version}",
        "ollama": "ollama/ollama:{version}",
        "sglang": "lmsysorg/sglang:v{version}",
        "lmdeploy": "openmmlab/lmdeploy:v{version}",
        "xinference": "xprobe/xinference:v{version}",
    }
    # doctor's offline check lacked sglang's ModelScope variable: the declaration has it
    sg = get("sglang").hub.required(source="modelscope", offline=True, endpoint=None)
    assert sg["SGLANG_USE_MODELSCOPE"] == "true" and sg["HF_HUB_OFFLINE"] == "1"
    # the install checks the executable the backend runs (sglang: python3, not python)
    from llmdeploy_cli.engines import catalog

    assert catalog.get("sglang").executable == get("sglang").executable == "python3"
