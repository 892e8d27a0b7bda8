"""One --url check for smoke and bench: the same URLs are accepted, the same refused, with
exit 2 and one line saying what is wrong (never the generic crash handler)."""

from __future__ import annotations

import pytest

from llmdeploy_cli.errors import UsageError
from llmdeploy_cli.openai_http.urls import openai_root
from tests.e2e import run


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
        ("localhost:8000", "http://localhost:8000/v1"),
        ("https://gw.example/openai/v1/", "https://gw.example/openai/v1"),
        ("http://[::1]:8000", "http://[::1]:8000/v1"),
    ],
)
def test_accepted_forms_give_the_openai_root(url, root):
    assert openai_root(url) == root


BAD = {
    "http://[::1": "not a valid URL",
    "ftp://host/v1": "scheme must be http or https",
    "http://:8000": "names no host",
    "http://h:99999": "not a valid URL",
    "http://h:8000/v1?x=1": "without ?query",
}


@pytest.mark.parametrize("url", sorted(BAD))
def test_refused_forms_say_why(url):
    with pytest.raises(UsageError, match=BAD[url].replace("?", r"\?")):
        openai_root(url)


@pytest.mark.parametrize("url", sorted(BAD))
@pytest.mark.parametrize("command", [["smoke"], ["bench", "--model", "m", "-n", "1"]])
def test_smoke_and_bench_refuse_alike_with_exit_2(command, url, tmp_path):
    import os

    env = {**os.environ, "LLMCTL_STATE_DIR": str(tmp_path)}
    r = run(command[0], "--url", url, *command[1:], env=env, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert BAD[url] in r.stderr and "unexpected" not in r.stderr
    assert "Traceback" not in r.stderr
