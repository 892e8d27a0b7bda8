"""The docs are a user's first program: every shell block in README.md and docs/ is checked
the way its marker says (tests/doccheck.py), so a doc that drifts from the code fails the
build the way a golden file does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import doccheck
from tests.conftest import ROOT

BLOCKS = doccheck.shell_blocks(ROOT)
ALL = [b for p in doccheck.doc_files(ROOT) for b in doccheck.blocks(p)]
RUN_DOCS = sorted({b.path for b in BLOCKS if b.check not in (None, "flags", "ci")})
WORKFLOWS = [b for b in ALL if b.check == "workflow"]


def test_every_shell_block_says_how_it_is_checked():
    unmarked = [b.where for b in BLOCKS if b.check is None]
    assert not unmarked, (
        "shell blocks without a `<!-- check: run|exit N|flags|ci -->` marker on the line "
        f"before the fence (see tests/doccheck.py): {unmarked}"
    )


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
def test_commands_and_flags_exist(block):
    """Every `llmctl` command and flag a doc shows exists (run blocks too: a cheap first net)."""
    assert doccheck.flag_problems(block, ROOT) == []


def test_ci_blocks_are_what_ci_runs():
    ci_run = (ROOT / ".ci" / "run").read_text()
    for b in (b for b in BLOCKS if b.check == "ci"):
        for words in doccheck.commands_in(b.script):
            if words[:2] == ["make", "test"]:
                assert "make test" in ci_run, f"{b.where}: .ci/run does not run `make test`"
            elif words[:2] == ["make", "demo"]:
                pass  # run below, as written
            else:
                raise AssertionError(f"{b.where}: `{' '.join(words)}` is not run by CI")


# -- running them ----------------------------------------------------------------------------


def sandbox(tmp_path: Path, tiny_model: Path) -> tuple[Path, dict]:
    """A checkout-like folder (what a user's clone looks like after `make install`) and the
    environment a user's shell would have: llmctl on PATH, its own state folder."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("Makefile", "pyproject.toml", ".venv", "tests", "llmdeploy_cli", "backends"):
        (work / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "profiles", work / "profiles")
    shutil.copytree(ROOT / "scripts", work / "scripts")
    (work / ".cache").mkdir()
    (work / ".cache" / "tiny-model").symlink_to(tiny_model)
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        "LLMCTL_STATE_DIR": str(tmp_path / "state"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
    }
    env.pop("LLMCTL_DEMO_MODEL", None)
    return work, env


def stop_all(work: Path, env: dict) -> None:
    subprocess.run(["llmctl", "stop", "--all"], cwd=work, env=env, capture_output=True, timeout=120)


def bash(script: str, work: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.parametrize("doc", RUN_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_run_blocks_work_as_written(doc, tiny_model, tmp_path):
    """A doc's run blocks, in order, in one shell-like sandbox (later blocks use what earlier
    ones made, as a reader following the page would)."""
    work, env = sandbox(tmp_path, tiny_model)
    try:
        for b in (b for b in BLOCKS if b.path == doc and b.check not in (None, "flags", "ci")):
            script = b.script
            if b.text.startswith("#!"):  # a script the doc tells you to save and run
                name = re.search(r"^# (\S+\.sh)", b.text, flags=re.M)
                path = work / (name.group(1) if name else "doc-script.sh")
                path.write_text(b.text)
                path.chmod(0o755)
                script = f"./{path.name}"
            r = bash(script, work, env)
            assert r.returncode == b.expected_exit, (
                f"{b.where} exited {r.returncode}, the doc expects {b.expected_exit}\n"
                f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
            )
    finally:
        stop_all(work, env)


# -- GitHub Actions workflows ----------------------------------------------------------------

EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


def run_workflow(text: str, work: Path, env: dict, temp: Path) -> list[tuple[str, int]]:
    """Run a workflow's `run:` steps as GitHub's runner would (bash -e, GITHUB_OUTPUT,
    `steps.ID.outputs.X`, `runner.temp`, `if: failure()/always()`); `uses:` steps stand for
    what the sandbox already is (a checkout with Python). Returns (step, exit) pairs."""
    doc = yaml.safe_load(text)
    (job,) = doc["jobs"].values()
    outputs: dict[str, dict[str, str]] = {}

    def expand(s: str) -> str:
        def one(m: re.Match) -> str:
            expr = m.group(1)
            if expr == "runner.temp":
                return str(temp)
            parts = expr.split(".")
            if parts[0] == "steps" and parts[2] == "outputs":
                return outputs.get(parts[1], {}).get(parts[3], "")
            raise AssertionError(f"workflow expression the test cannot evaluate: {expr}")

        return EXPR.sub(one, s)

    job_env = {k: expand(str(v)) for k, v in (job.get("env") or {}).items()}
    failed = False
    results = []
    for i, step in enumerate(job["steps"]):
        name = step.get("name") or step.get("uses") or f"step {i}"
        cond = step.get("if", "success()")
        if (cond == "failure()" and not failed) or (cond == "success()" and failed):
            continue
        if "uses" in step:
            if step["uses"].startswith("actions/upload-artifact"):
                for p in str(step["with"]["path"]).split():
                    assert (work / p).is_file(), f"{name}: {p} was not written"
            continue
        out_file = temp / f"output-{i}"
        out_file.write_text("")
        step_env = {**env, **job_env, "GITHUB_OUTPUT": str(out_file)}
        r = bash(expand(step["run"]), work, step_env)
        results.append((name, r.returncode))
        if r.returncode:
            failed = True
            print(f"--- {name} exited {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        if "id" in step:
            outputs[step["id"]] = dict(
                line.split("=", 1) for line in out_file.read_text().splitlines() if "=" in line
            )
    return results


@pytest.mark.slow
@pytest.mark.parametrize("block", WORKFLOWS, ids=lambda b: b.where)
def test_workflows_run_end_to_end(block, tiny_model, tmp_path):
    work, env = sandbox(tmp_path, tiny_model)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    try:
        results = run_workflow(block.text, work, env, temp)
    finally:
        stop_all(work, env)
    assert results and all(rc == 0 for _, rc in results), results


@pytest.mark.slow
def test_make_demo_as_the_readme_says(tmp_path):
    """README's first command, in this checkout (its .venv exists, so make only builds the
    tiny model and runs the demo script)."""
    env = {**os.environ, "LLMCTL_STATE_DIR": str(tmp_path / "state")}
    env.pop("LLMCTL_DEMO_MODEL", None)
    r = subprocess.run(
        ["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "ready" in r.stdout + r.stderr
