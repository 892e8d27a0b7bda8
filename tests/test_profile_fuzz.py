"""Property tests: random and mutated profiles never crash llmctl.

Whatever the file holds, `validate` and `render` end with a documented exit code (0 or 2)
and, under --json, one JSON document; never a traceback or an "internal" error.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmdeploy_cli.cli.app import main
from tests.conftest import PROFILES

EXAMPLES = [yaml.safe_load(p.read_text()) for p in sorted(PROFILES.glob("*.yml"))]
KEYS = sorted(
    {k for ex in EXAMPLES for k in ex}
    | {k for ex in EXAMPLES for v in ex.values() if isinstance(v, dict) for k in v}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["auto", "0.0.0.0", "${UNSET_VAR}", "${X:-1}", "$${", "cuda", "no", "~"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=3
        ),
    ),
    max_leaves=8,
)


@st.composite
def mutated_profiles(draw):
    doc = json.loads(json.dumps(draw(st.sampled_from(EXAMPLES))))
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(doc) or ["name"]))
        target = doc
        if isinstance(doc.get(section), dict) and doc[section] and draw(st.booleans()):
            target = doc[section]
        key = draw(st.one_of(st.sampled_from(sorted(target) or ["x"]), st.sampled_from(KEYS)))
        action = draw(st.sampled_from(["delete", "replace", "insert"]))
        if action == "delete":
            target.pop(key, None)
        else:
            target[key] = draw(values)
    return doc


def run_cli(text: str, command: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.yml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([command, str(path), "--json"])
        return code, out.getvalue()


def check(code: int, out: str) -> None:
    assert code in (0, 2), out
    doc = json.loads(out)
    assert doc.get("error", {}).get("kind") != "internal", doc
    assert "Traceback" not in out


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated_profiles(), st.sampled_from(["validate", "render"]))
def test_mutated_profiles_fail_cleanly(doc, command):
    check(*run_cli(yaml.safe_dump(doc, allow_unicode=True), command))


@FUZZ
@given(st.text(max_size=200), st.sampled_from(["validate", "render"]))
def test_random_text_fails_cleanly(text, command):
    check(*run_cli(text, command))


@FUZZ
@given(values)
def test_random_documents_fail_cleanly(doc):
    check(*run_cli(yaml.safe_dump(doc, allow_unicode=True), "validate"))
