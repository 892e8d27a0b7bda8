"""The gateway file: every key typed, file:line errors, names unique, safe listen, and
`llmctl gateway validate` with its exit codes (static: a fake GGUF path is enough when
the need is given)."""

from __future__ import annotations

import json

import pytest

from llmdeploy_cli.cli.app import main
from llmdeploy_cli.errors import ProfileError
from llmdeploy_cli.gateway.config import load_gateway
from tests.gateway.conftest import llama_profile, write_gateway

G = 1024**3


@pytest.fixture
def two(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    llama_profile(tmp_path / "profiles", "a", gguf)
    llama_profile(tmp_path / "profiles" / "more", "b", gguf)
    return tmp_path


def load(folder, body, env=None):
    return load_gateway(write_gateway(folder, body), env or {})


def issues(folder, body, env=None) -> list:
    with pytest.raises(ProfileError) as e:
        load(folder, body, env)
    return e.value.issues


def test_every_key_and_globs_relative_to_the_file(two):
    gw = load(
        two,
        """\
        name: lab
        listen: {host: 127.0.0.1, port: 4100}
        profiles: [profiles/a.yml, "profiles/*/*.yml"]
        defaults: {ttl: 60, queue_timeout: 5, max_concurrency: 2, max_queue: 3, min_resident: 1}
        models:
          a: {aliases: [gpt-4o-mini], preload: true, pin: true, ttl: 0, max_concurrency: 8,
              need: 2GiB}
          b: {need: 512MiB}
        memory: {gpus: [24GiB], host_ram: 16GiB, reserve: 2GiB}
        shutdown_grace: 5
        max_body: 1MiB
        upstream: {connect_timeout: 2, idle_timeout: 30}
        """,
    )
    assert sorted(gw.models) == ["a", "b"]
    a, b = gw.models["a"], gw.models["b"]
    assert a.aliases == ["gpt-4o-mini"] and a.pin and a.preload and a.need_override == 2 * G
    assert a.policy.ttl == 0 and a.policy.max_concurrency == 8 and a.policy.queue_timeout == 5
    assert b.policy.ttl == 60 and b.policy.max_queue == 3 and b.need_override == 512 * 1024**2
    assert gw.spec.memory.gpus == [24 * G] and gw.spec.memory.host_ram == 16 * G
    assert gw.spec.max_body == 1024**2 and gw.spec.upstream.idle_timeout == 30
    assert set(gw.by_request_name()) == {"a", "b", "gpt-4o-mini"}


def test_unknown_key_points_at_its_line(two):
    found = issues(two, "name: lab\nprofiles: [profiles/a.yml]\ndefaults:\n  tll: 3\n")
    assert found[0].line == 4 and "unknown key" in found[0].message
    assert "ttl" in (found[0].hint or "")


def test_duplicate_alias_is_refused(two):
    found = issues(
        two,
        """\
        name: lab
        profiles: [profiles/a.yml, profiles/more/b.yml]
        models:
          b: {aliases: [a]}
        """,
    )
    assert any("'a' is claimed by both" in i.message for i in found)
    assert found[0].line == 4


def test_duplicate_profile_name_is_refused(two):
    gguf = two / "m.gguf"
    llama_profile(two / "copy", "a", gguf)
    found = issues(two, "name: lab\nprofiles: [profiles/a.yml, copy/a.yml]\n")
    assert "used twice" in found[0].message and found[0].line == 2


def test_non_loopback_listen_needs_a_key(two):
    found = issues(two, "name: lab\nlisten: {host: 0.0.0.0}\nprofiles: [profiles/a.yml]\n")
    assert "no key" in found[0].message and found[0].line == 2
    gw = load(
        two,
        "name: lab\nlisten: {host: 0.0.0.0}\napi_key_env: GWKEY\nprofiles: [profiles/a.yml]\n",
        {"GWKEY": "k"},
    )
    assert gw.spec.api_key_env == "GWKEY"


def test_missing_profiles_and_unmatched_glob(two):
    found = issues(two, "name: lab\nprofiles: [nope.yml, 'x/*.yml']\n")
    assert [i.line for i in found] == [2, 2]
    assert "not found" in found[0].message and "no file matches" in found[1].message


def test_models_key_for_an_unknown_profile(two):
    found = issues(two, "name: lab\nprofiles: [profiles/a.yml]\nmodels:\n  zz: {pin: true}\n")
    assert "no profile named 'zz'" in found[0].message and found[0].line == 4


def test_a_bad_profile_is_reported_with_its_own_file(two):
    (two / "profiles" / "bad.yml").write_text("name: bad\nbackend: nosuch\nmodel: {source: x}\n")
    found = issues(two, "name: lab\nprofiles: ['profiles/*.yml']\n")
    assert any(i.file and i.file.endswith("bad.yml") for i in found)


def run(capsys, *args):
    code = main(["gateway", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_validate_shows_needs_and_groups(two, capsys):
    f = write_gateway(
        two,
        """\
        name: lab
        profiles: [profiles/a.yml, profiles/more/b.yml]
        models: {a: {need: 3GiB}, b: {need: 3GiB}}
        memory: {host_ram: 4GiB, gpus: []}
        """,
    )
    code, out, _ = run(capsys, "validate", f)
    assert code == 0, out
    assert "needs 3.00 GiB on host" in out and "fits alone" in out
    code, out, _ = run(capsys, "validate", f, "--json")
    doc = json.loads(out)
    assert doc["ok"] and doc["together"] == [["a"], ["b"]]
    assert doc["schema_version"] == 1


def test_validate_a_model_that_never_fits_exits_2(two, capsys):
    f = write_gateway(
        two,
        """\
        name: lab
        profiles: [profiles/a.yml]
        models: {a: {need: 5GiB}}
        memory: {host_ram: 4GiB, gpus: []}
        """,
    )
    code, _, err = run(capsys, "validate", f)
    assert code == 2 and "can never fit" in err


def test_validate_bad_file_exits_2_with_file_line(two, capsys):
    f = write_gateway(two, "name: lab\nprofiles: [profiles/a.yml]\nshutdown_grace: soon\n")
    code, _, err = run(capsys, "validate", f)
    assert code == 2 and "gateway.yml:3" in err
