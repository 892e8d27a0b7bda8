"""The profile schema and loader: every problem with file:line, interpolation, defaults."""

from __future__ import annotations

import pytest

from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.profile import load_profile

MINIMAL = """
name: demo
backend: transformers
model:
  source: /models/tiny
"""


def issues_of(path, env=None):
    with pytest.raises(ProfileError) as e:
        load_profile(path, env or {})
    return e.value.issues


def test_minimal_profile_defaults(write_profile):
    p = load_profile(write_profile(MINIMAL), {})
    assert p.server.host == "127.0.0.1"  # safe by default
    assert p.server.port is None and p.server.managed is True
    assert p.served_name == "demo"
    assert p.resources.tensor_parallel == 1
    assert p.restart.policy == "no"
    assert p.set_keys() >= {"name", "backend", "model.source"}
    assert "server.host" not in p.set_keys()


def test_unknown_key_has_line_and_did_you_mean(write_profile):
    path = write_profile(MINIMAL + "  sauce: 1\n")
    [issue] = issues_of(path)
    assert issue.line == 5 and issue.key == "model.sauce"
    assert "did you mean 'source'" in issue.hint


def test_every_problem_reported_at_once(write_profile):
    path = write_profile(
        MINIMAL
        + "server:\n  port: 70000\nresources:\n  gpu_memory_utilization: 1.5\n  max_num_seqs: 0\n"
    )
    keys = {i.key for i in issues_of(path)}
    assert keys == {
        "server.port",
        "resources.gpu_memory_utilization",
        "resources.max_num_seqs",
    }


def test_wrong_type_names_key_path(write_profile):
    [issue] = issues_of(write_profile(MINIMAL + "resources:\n  max_model_len: lots\n"))
    assert issue.key == "resources.max_model_len" and issue.line == 6
    assert "integer" in issue.message


def test_duplicate_keys_refused(write_profile):
    [issue] = issues_of(write_profile(MINIMAL + "name: again\n"))
    assert "duplicate key 'name'" in issue.message and issue.line == 5


def test_interpolation(write_profile):
    path = write_profile(
        "name: demo\nbackend: transformers\nmodel:\n"
        "  source: ${MODEL_DIR}/tiny\n  served_name: ${SERVED:-tiny}\n"
        "env:\n  LITERAL: $${NOT_A_VAR}\n"
    )
    p = load_profile(path, {"MODEL_DIR": "/data"})
    assert p.model.source == "/data/tiny"
    assert p.model.served_name == "tiny"
    assert p.env["LITERAL"] == "${NOT_A_VAR}"


def test_missing_variable_is_one_clear_issue(write_profile):
    [issue] = issues_of(write_profile("name: x\nbackend: vllm\nmodel:\n  source: ${NOPE}\n"))
    assert "${NOPE} is not set" in issue.message and issue.line == 4


def test_api_key_inline_is_not_a_variable_name(write_profile):
    [issue] = issues_of(write_profile(MINIMAL + "server:\n  api_key_env: sk-123-abc\n"))
    assert issue.key == "server.api_key_env"


def test_yaml_no_means_restart_policy_no(write_profile):
    p = load_profile(write_profile(MINIMAL + "restart:\n  policy: no\n"), {})
    assert p.restart.policy == "no"


def test_empty_sections_are_empty(write_profile):
    p = load_profile(write_profile(MINIMAL + "resources:\nenv:\nextra_args:\n"), {})
    assert p.env == {} and p.extra_args == []


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("- a\n- b\n", "mapping"),
        ("name: [unclosed\n", "YAML"),
    ],
)
def test_not_a_profile(write_profile, text, fragment):
    issues = issues_of(write_profile(text))
    assert fragment.lower() in " ".join(str(i) for i in issues).lower()


def test_relative_model_path_is_relative_to_profile(write_profile, tmp_path):
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    p = load_profile(write_profile(MINIMAL.replace("/models/tiny", "./models/tiny")), {})
    assert p.model_path() == tmp_path / "models" / "tiny"


def test_hub_id_is_not_a_path(write_profile):
    p = load_profile(write_profile(MINIMAL.replace("/models/tiny", "Qwen/Qwen2.5-0.5B")), {})
    assert p.model_path() is None


@pytest.mark.parametrize(
    "text", ["=\n", "name: !custom x\n", "model: {source: !!python/name:os.system x}\n"]
)
def test_values_no_safe_constructor_takes(write_profile, text):
    """Found by the fuzzer: `=` is YAML's value tag; custom tags are refused, never run."""
    [issue] = issues_of(write_profile(text))
    assert "YAML" in issue.message and issue.line == 1
