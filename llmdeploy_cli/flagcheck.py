"""Is every rendered flag an exact option string of the engine's real parser?

argparse accepts abbreviations (`--gpu-mem 0.7` parses in vLLM), so "it parses" proves
nothing. A flag is right only when it is an exact option string of the parser of that
engine version, and its value is one of the recorded choices. The option lists come from
`flag_snapshot.py`, run in the engine's own environment with what the backend declares as
its `flag_source` (cached per engine and version under the state dir) or, for engines not
installed here, from the snapshots committed where that flag source says (the built-ins':
`llmdeploy_cli/data/flags/`). A backend whose flag_source is NOT_SUPPORTED is not checked.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmdeploy_cli.fsutil import atomic_write

DATA = Path(__file__).resolve().parent / "data" / "flags"
SNAPSHOT_SCRIPT = Path(__file__).resolve().parent / "flag_snapshot.py"


@dataclass(frozen=True)
class FlagProblem:
    step: str
    flag: str
    message: str
    level: str = "fail"  # fail | warn (xinference launch forwards unknown flags)

    def as_dict(self) -> dict:
        return {"step": self.step, "flag": self.flag, "message": self.message, "level": self.level}


# -- snapshots --------------------------------------------------------------------------------


def flag_source(engine: str):
    """The registered backend's declared FlagSource, or None (not supported, or unknown)."""
    from llmdeploy_cli import registry
    from llmdeploy_cli.capabilities import supported
    from llmdeploy_cli.errors import LlmctlError

    try:
        source = registry.get(engine).flag_source
    except LlmctlError:
        return None
    return source if supported(source) else None


def snapshot_dir(engine: str) -> Path:
    """Where the committed snapshots of `engine` live ("package:folder" of its FlagSource)."""
    from importlib import resources

    source = flag_source(engine)
    if source is None:
        return DATA
    package, _, folder = source.snapshots.partition(":")
    return Path(str(resources.files(package))) / folder


def committed_versions(engine: str) -> list[str]:
    from llmdeploy_cli.engine_env import version_tuple

    found = [p.stem[len(engine) + 1 :] for p in snapshot_dir(engine).glob(f"{engine}-*.json")]
    return sorted(found, key=version_tuple)


def committed_snapshot(engine: str, version: str) -> dict | None:
    path = snapshot_dir(engine) / f"{engine}-{version}.json"
    return json.loads(path.read_text()) if path.exists() else None


def spec_for(engine: str) -> dict | None:
    """What flag_snapshot.py --spec takes for `engine`, or None when it has no flag source."""
    source = flag_source(engine)
    return None if source is None else source.as_spec(engine)


def engine_python(executable: str) -> str | None:
    """The Python that runs a console script (its shebang), or the executable if it is one."""
    name = os.path.basename(executable)
    if name.startswith("python"):
        return executable
    try:
        with open(executable, "rb") as f:
            first = f.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if first.startswith("#!"):
        interp = first[2:].strip().split()
        if interp and os.path.basename(interp[0]).startswith("python"):
            return interp[0]
        # `#!/bin/sh` + exec trampoline (long paths): the python sits beside the script
    beside = Path(executable).parent / "python"
    return str(beside) if beside.exists() else None


READ_TICK = 3.0  # seconds between progress lines while an engine's parser is read


def installed_snapshot(
    engine: str,
    version: str,
    python: str,
    cache_dir: Path,
    spec: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Introspect the installed engine's parser (cached per engine and version).

    Importing an engine's argument parser takes seconds (vLLM: about 17 s); `progress`
    hears one line when the read starts and one every READ_TICK seconds until it ends."""
    from llmdeploy_cli.errors import PreflightError

    cache = cache_dir / "flags" / f"{engine}-{version}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    spec = spec if spec is not None else spec_for(engine)
    if spec is None:
        raise PreflightError(f"backend '{engine}' declares no flag source to read its parser")
    env = {**os.environ, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
    argv = [python, str(SNAPSHOT_SCRIPT), "--spec", json.dumps(spec)]
    say = progress or (lambda text: None)
    say(
        f"reading {engine} {version}'s flags from its parser ({python}); "
        "this takes a while the first time, then it is cached"
    )
    try:
        proc = _run_ticking(
            argv, env, 300.0, lambda t: say(f"still reading the {engine} parser: {t:.0f} s")
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PreflightError(f"could not read {engine}'s parser with {python}: {e}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PreflightError(
            f"could not read {engine}'s parser with {python}: {last}",
            hint="is the engine importable in that environment? try: "
            f'{python} {SNAPSHOT_SCRIPT} --spec "$(llmctl backends --flag-spec {engine})"',
        )
    doc = json.loads(proc.stdout)
    atomic_write(cache, proc.stdout)
    return doc


def _run_ticking(argv: list[str], env: dict, timeout: float, tick: Callable[[float], None]):
    """subprocess.run(argv, capture_output, text) that calls tick(seconds) every READ_TICK
    seconds while it waits."""
    import time

    start = time.monotonic()
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as p:
        while True:
            left = timeout - (time.monotonic() - start)
            try:
                out, err = p.communicate(timeout=max(0.01, min(READ_TICK, left)))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() - start >= timeout:
                    p.kill()
                    p.communicate()
                    raise
                tick(time.monotonic() - start)
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


# -- checking ---------------------------------------------------------------------------------


def command_for(argv: list[str], snapshot: dict) -> tuple[dict, int] | None:
    """The snapshot command an argv runs, and how many argv words name it."""
    for cmd in snapshot["commands"]:
        words = cmd["command"].split()
        head = os.path.basename(argv[0]) if argv else ""
        first_ok = head == words[0] or (words[0] == "python" and head.startswith("python"))
        if first_ok and argv[1 : len(words)] == words[1:]:
            return cmd, len(words)
    return None


def check_argv(step: str, argv: list[str], snapshot: dict) -> list[FlagProblem]:
    found = command_for(argv, snapshot)
    if found is None:
        return []  # not a command this engine's snapshot covers (e.g. ollama create)
    cmd, start = found
    options: dict = cmd["options"]
    forwards = bool(cmd.get("passes_unknown"))
    label = f"{snapshot['engine']} {snapshot['version']} `{cmd['command']}`"
    problems: list[FlagProblem] = []
    i = start
    while i < len(argv):
        token = argv[i]
        i += 1
        if not _is_option(token):
            continue  # a positional (the model) or a value we already consumed
        name, has_inline, inline = token.partition("=")
        spec = options.get(name)
        if spec is None:
            close = nearest(name, options)
            if forwards:
                msg = f"{name} is not an option of {label}: it is forwarded to the model"
                problems.append(FlagProblem(step, name, msg, level="warn"))
            else:
                near = f" (nearest real option: {close[0]})" if close else ""
                msg = f"{name} is not an option of {label}{near}"
                problems.append(FlagProblem(step, name, msg))
            if i < len(argv) and not _is_option(argv[i]) and not has_inline:
                i += 1  # skip its value
            continue
        values: list[str] = []
        if has_inline:
            values = [inline]
        elif spec["takes_value"]:
            nargs = spec.get("nargs")
            if nargs in ("+", "*"):
                while i < len(argv) and not _is_option(argv[i]):
                    values.append(argv[i])
                    i += 1
            elif nargs == "?":
                if i < len(argv) and not _is_option(argv[i]):
                    values.append(argv[i])
                    i += 1
            else:
                count = nargs if isinstance(nargs, int) else 1
                values = argv[i : i + count]
                i += count
                if len(values) < count:
                    problems.append(FlagProblem(step, name, f"{name} needs a value"))
        choices = spec.get("choices")
        for v in values:
            if choices and v not in choices:
                problems.append(
                    FlagProblem(step, name, f"{name} {v!r}: {label} accepts {', '.join(choices)}")
                )
    return problems


def nearest(name: str, options) -> list[str]:
    """The real option a wrong one was meant to be: the one argparse would silently expand
    an abbreviation to, else the closest spelling."""
    expands = [o for o in options if o.startswith(name)]
    if len(expands) == 1:
        return expands
    return difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)


def check_plan(plan, snapshot: dict) -> list[FlagProblem]:
    problems: list[FlagProblem] = []
    for step in plan.steps:
        problems += check_argv(step.name, [str(a) for a in step.command.argv], snapshot)
    return problems


def _is_option(token: str) -> bool:
    if not token.startswith("-") or token == "-" or token == "--":
        return False
    try:
        float(token)  # -1, -0.5 are values
        return False
    except ValueError:
        return True


# -- for a resolved profile ----------------------------------------------------------------------


@dataclass(frozen=True)
class FlagReport:
    checked: bool
    source: str  # "installed engine (python ...)", "committed snapshot", or why not checked
    problems: list[FlagProblem]

    @property
    def failed(self) -> bool:
        return any(p.level == "fail" for p in self.problems)

    def as_dict(self) -> dict:
        return {
            "checked": self.checked,
            "source": self.source,
            "problems": [p.as_dict() for p in self.problems],
        }


def check_resolved(
    resolved, state_dir: Path, progress: Callable[[str], None] | None = None
) -> FlagReport:
    """Check a resolved profile's argv against the engine that will run it.

    The installed engine's own parser when its version was read from its environment
    (introspected once per engine version, then cached); else the committed snapshot of
    the version rendered for; else nothing to check against, said plainly.
    """
    from llmdeploy_cli.capabilities import supported
    from llmdeploy_cli.engine_env import find_executable

    backend, profile, plan = resolved.backend, resolved.profile, resolved.plan
    engine, version = backend.name, plan.engine_version or backend.newest_known
    snapshot, source = None, ""
    flags = backend.capability("flag_source")
    readable = supported(flags)  # the backend says how flag_snapshot.py reads its parser
    if readable and (plan.version_source or "").startswith("dist-info"):
        exe = find_executable(backend, profile)
        python = engine_python(exe) if exe else None
        if python:
            spec = flags.as_spec(engine)
            snapshot = installed_snapshot(engine, version, python, state_dir, spec, progress)
            source = f"installed {engine} {version} ({python})"
    if snapshot is None:
        snapshot = committed_snapshot(engine, version)
        source = f"llmctl's snapshot of {engine} {version}"
    if snapshot is None and not readable and not committed_versions(engine):
        return FlagReport(False, f"llmctl cannot read {engine}'s parser (not a Python CLI)", [])
    if snapshot is None:
        have = committed_versions(engine)
        why = f"{engine} {version} is not installed where the profile points and llmctl has " + (
            f"snapshots of {', '.join(have)} only" if have else "no snapshot of it"
        )
        return FlagReport(False, why, [])
    return FlagReport(True, source, check_plan(plan, snapshot))
