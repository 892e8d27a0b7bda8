"""`llmctl engine install`: one engine in its own virtual environment, repeatably.

Steps (each reported as an Event; the core never prints):
1. pick the installer: `uv` when it is on PATH (`uv venv` + `uv pip install`), else
   `python -m venv` + pip;
2. create ENGINES_DIR/NAME-VERSION-DEVICE with an install marker in it;
3. install the recipe's torch first (the CPU build for --device cpu), then the engine's
   packages, both against the committed constraints file, which pins every package: the
   resolver has nothing left to choose, so it cannot backtrack, and it cannot swap the
   CPU torch for a CUDA one (a torch without +cpu, or any nvidia-* package, fails the
   install on CPU);
4. CPU fix-ups: the torchvision the index pairs with torch is a CUDA build that raises on
   import with a CPU torch ("operator torchvision::nms does not exist"); it is removed;
5. check the executable is there, then write the manifest atomically and drop the marker.
A failure removes the half-built env and raises InstallError with the resolver's own last
meaningful lines. uv does not read pip's configuration, so the index and find-links pip is
configured with are passed to uv explicitly (unless UV_* variables configure uv itself).
"""

from __future__ import annotations

import configparser
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llmdeploy_cli.distinfo import dists as _dists
from llmdeploy_cli.engines.events import Event, InstallError
from llmdeploy_cli.errors import UsageError

MEANINGFUL_TAIL = 12


def _run_process(argv: list[str], env: dict[str, str], on_line: Callable[[str], None]) -> int:
    """Run argv (never a shell), streaming merged stdout/stderr lines; return the status."""
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except FileNotFoundError:
        on_line(f"executable not found: {argv[0]}")
        return 127
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise


@dataclass
class Tools:
    """The seam unit tests replace: which() finds executables, run() runs one command."""

    which: Callable[[str], str | None] = field(default=None)  # type: ignore[assignment]
    run: Callable[[list[str], dict[str, str], Callable[[str], None]], int] = _run_process
    python: str = field(default_factory=lambda: sys.executable)

    def __post_init__(self) -> None:
        if self.which is None:
            self.which = _which_here_or_on_path


def _which_here_or_on_path(name: str) -> str | None:
    """PATH, then llmctl's own environment (uv from the `test` extra sits there even when
    that venv is not activated)."""
    return shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))


def meaningful_tail(lines: list[str], n: int = MEANINGFUL_TAIL) -> list[str]:
    """The resolver's own reason: from its first error line on, else the last lines.

    Drops what never explains a failure: blank lines, pip's notices, index warnings about
    find-links folders, and download progress.
    """
    keep = [
        ln.rstrip()
        for ln in lines
        if ln.strip()
        and not ln.startswith("[notice]")
        and "is ignored: it is neither a file nor a directory" not in ln
        and not ln.lstrip().startswith(("Downloading ", "━", "|"))
    ]
    for i, ln in enumerate(keep):
        s = ln.lstrip()
        if s.startswith(("ERROR:", "error:", "×", "  ×")) or s.startswith("× "):
            return keep[i : i + 3 * n]
    return keep[-n:]


def pip_index_args(environ: dict[str, str] | None = None) -> list[str]:
    """pip's configured indexes and find-links, as uv flags (uv reads neither)."""
    env = os.environ if environ is None else environ
    if any(k in env for k in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS")):
        return []  # uv is configured on its own
    values: dict[str, list[str]] = {"index-url": [], "extra-index-url": [], "find-links": []}
    files = ["/etc/pip.conf", "/etc/xdg/pip/pip.conf"]
    xdg = env.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    files += [os.path.expanduser("~/.pip/pip.conf"), os.path.join(xdg, "pip", "pip.conf")]
    if env.get("PIP_CONFIG_FILE"):
        files.append(env["PIP_CONFIG_FILE"])
    for f in files:
        cp = configparser.ConfigParser(interpolation=None)
        try:
            cp.read(f)
        except (configparser.Error, OSError):
            continue
        for section in ("global", "install"):
            if not cp.has_section(section):
                continue
            for key in values:
                if cp.has_option(section, key):
                    # a later file overrides an earlier one, as pip does
                    values[key] = cp.get(section, key).split()
    for key in values:
        var = "PIP_" + key.upper().replace("-", "_")
        if env.get(var):
            values[key] = env[var].split()
    args: list[str] = []
    for url in values["index-url"][:1]:
        args += ["--index-url", url]
    for url in values["extra-index-url"]:
        args += ["--extra-index-url", url]
    for loc in values["find-links"]:
        args += ["--find-links", loc]
    if values["extra-index-url"] or values["find-links"]:
        # pip takes the best version across every index; uv's default takes the first
        # index that has the package, which would miss a CPU torch in find-links.
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def default_device(tools: Tools | None = None) -> str:
    which = (tools or Tools()).which
    return "cuda" if which("nvidia-smi") else "cpu"


@dataclass
class InstallResult:
    path: Path
    manifest: dict
    already: bool = False
    seconds: float = 0.0


def install(
    name: str,
    version: str | None = None,
    device: str | None = None,
    *,
    on_event: Callable[[Event], None] | None = None,
    tools: Tools | None = None,
    base: Path | None = None,
    force: bool = False,
    unpinned: bool = False,
) -> InstallResult:
    from llmdeploy_cli.engines import catalog, store

    tools = tools or Tools()
    emit = on_event or (lambda e: None)
    recipe = catalog.get(name)
    version = version or recipe.default_version
    device = device or default_device(tools)
    if device not in recipe.devices:
        raise UsageError(
            f"engine '{name}' cannot be installed for --device {device}",
            hint=f"it runs on: {', '.join(recipe.devices)}",
        )
    cfile = catalog.constraints_name(name, version, device)
    if cfile is None and not unpinned and recipe.archive is None:
        have = catalog.pinned_files(name)
        raise UsageError(
            f"no committed constraints file for {name} {version} ({device})",
            hint=(f"committed for: {', '.join(have)}; " if have else "")
            + "or pass --unpinned to let the resolver choose (may backtrack for minutes; "
            "see docs/engines.md to add a constraints file)",
        )
    root = base or store.engines_dir()
    target = store.env_dir(name, version, device, root)
    root.mkdir(parents=True, exist_ok=True)
    with open(store.lock_path(target), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            emit(Event("step", f"waiting for another install of {target.name}"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        doc = store.read_manifest(target)
        if doc is not None and not (target / store.INSTALLING).exists() and not force:
            emit(Event("done", f"{name} {version} ({device}) is already installed: {target}"))
            return InstallResult(target, doc, already=True)
        if target.exists():
            emit(Event("step", f"removing the previous env at {target}"))
            if doc is None and not (target / store.INSTALLING).exists():
                _refuse_foreign(target)
            store.remove(target, locked=True)
        t0 = time.monotonic()
        try:
            if recipe.archive is not None:
                from llmdeploy_cli.engines import archive

                doc = archive.build(recipe, version, device, target, emit)
            else:
                doc = _build(recipe, version, device, cfile, target, tools, emit)
        except BaseException:
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            raise
        seconds = time.monotonic() - t0
        emit(Event("done", f"installed {name} {version} ({device}) in {seconds:.0f} s: {target}"))
        return InstallResult(target, doc, seconds=seconds)


def _refuse_foreign(target: Path) -> None:
    raise InstallError(
        f"{target} exists and is not an llmctl engine environment",
        hint="move it away, or set LLMCTL_ENGINES_DIR to another folder",
    )


def _build(recipe, version, device, cfile, target: Path, tools: Tools, emit) -> dict:
    from llmdeploy_cli.engines import catalog, store

    uv = tools.which("uv")
    if uv is None and recipe.prefer_uv:
        emit(
            Event(
                "warning",
                f"{recipe.name}'s pins are known not to resolve with plain pip; "
                "install uv (pip install uv) if this fails",
            )
        )
    env = _clean_env()
    tail: list[str] = []

    def run(argv: list[str], what: str) -> None:
        tail.clear()

        def on_line(line: str) -> None:
            tail.append(line)
            if len(tail) > 400:
                del tail[:200]
            if line.strip():
                emit(Event("output", line))

        rc = tools.run(argv, env, on_line)
        if rc != 0:
            reason = meaningful_tail(tail)
            first = next(
                (ln.strip() for ln in reason if ln.lstrip().startswith(("ERROR", "error", "×"))),
                reason[-1].strip() if reason else f"exit status {rc}",
            )
            rest = [ln for ln in reason if ln.strip() != first]
            if "+cpu" in first + " ".join(rest) and "torch" in what + " ".join(rest):
                rest.append(
                    "the CPU torch is not on the default index: configure pip's find-links "
                    "or extra-index-url to reach it (llmctl passes them on to uv as well)"
                )
            raise InstallError(f"{what} failed (exit {rc}): {first}", hint="\n".join(rest) or None)

    store.begin(target)
    cpath = target / "llmctl-constraints.txt"
    torch = recipe.torch.get(device)
    if cfile:
        cpath.write_text(catalog.constraints_text(cfile, recipe.name))
    else:
        # --unpinned: the resolver chooses everything but the CPU torch, which stays pinned
        # so that no later package can swap it for a CUDA build
        pin = f"torch=={torch}+cpu\n" if (device == "cpu" and torch) else ""
        cpath.write_text("# llmctl engine install --unpinned\n" + pin)
    constraints = ["-c", str(cpath)]
    py = str(target / "bin" / "python")
    # the recipe's own index for this device (a project's CUDA builds) replaces the configured one
    index = recipe.index_url.get(device)
    if uv:
        installer = f"uv ({uv})"
        emit(Event("step", f"creating {target} with uv"))
        run([uv, "venv", "--allow-existing", "--python", tools.python, str(target)], "uv venv")
        indexes = ["--index-url", index] if index else pip_index_args(env)
        base_cmd = [uv, "pip", "install", "--python", py, *indexes, *constraints]
    else:
        installer = "pip"
        emit(Event("step", f"creating {target} with python -m venv"))
        run([tools.python, "-m", "venv", str(target)], "python -m venv")
        indexes = ["--index-url", index] if index else []
        base_cmd = [py, "-m", "pip", "install", "--progress-bar", "off", *indexes, *constraints]
    if torch:
        kind = "CPU " if device == "cpu" else ""
        emit(Event("step", f"installing {kind}torch {torch} first"))
        run([*base_cmd, f"torch=={torch}"], f"installing torch {torch}")
    reqs = recipe.requirements(version)
    emit(Event("step", f"installing {' '.join(reqs)}" + (f" (pinned by {cfile})" if cfile else "")))
    run([*base_cmd, *reqs], f"installing {recipe.name} {version}")

    removed: list[dict] = []
    site = _site(target)
    if device == "cpu":
        emit(Event("step", "checking that torch is the CPU build"))
        cuda = _cuda_dists(site)
        if cuda:
            raise InstallError(
                f"a CUDA torch was installed for --device cpu ({', '.join(cuda[:4])})",
                hint="the constraints file must pin the CPU torch (torch==X+cpu) and the "
                "index pip/uv use must offer it",
            )
        if _has_dist(site, "torchvision"):
            probe: list[str] = []
            rc = tools.run([py, "-c", "import torchvision"], env, probe.append)
            if rc != 0:
                why = next((ln for ln in reversed(probe) if ln.strip()), "import failed")
                emit(
                    Event(
                        "step",
                        f"removing torchvision: it does not load with a CPU torch ({why.strip()})",
                    )
                )
                if uv:
                    run([uv, "pip", "uninstall", "--python", py, "torchvision"], "removing")
                else:
                    run([py, "-m", "pip", "uninstall", "-y", "torchvision"], "removing")
                removed.append({"package": "torchvision", "reason": why.strip()})
    else:
        # `torch==X` is satisfied by a local build `X+cpu` (PEP 440 ignores local labels),
        # so an index or find-links folder that offers one silently wins over the CUDA build.
        cpu = [f"torch {v}" for n, v in _dists(site) if n == "torch" and v.endswith("+cpu")]
        if cpu:
            raise InstallError(
                f"a CPU torch was installed for --device {device} ({cpu[0]})",
                hint="pip's configuration (find-links or an extra index) offers a CPU build "
                "that satisfies the torch pin: install without it (e.g. PIP_FIND_LINKS= "
                "PIP_EXTRA_INDEX_URL=), or use --device cpu",
            )
    exe = target / "bin" / recipe.executable
    if not os.access(exe, os.X_OK):
        raise InstallError(
            f"the install finished but {exe} is missing",
            hint=f"the {recipe.name} packages did not install their command",
        )
    return store.finish(
        target,
        recipe,
        version,
        device,
        installer,
        python=_python_version(target),
        constraints=cfile,
        requirements=([f"torch=={torch}"] if torch else []) + reqs,
        removed=removed,
        **({"index_url": index} if index else {}),
    )


def _clean_env() -> dict[str, str]:
    """The caller's environment minus what would point the installer at another env."""
    env = dict(os.environ)
    for k in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME", "PIP_USER", "UV_PROJECT"):
        env.pop(k, None)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env["PIP_NO_INPUT"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("UV_NO_PROGRESS", "1")
    return env


def _site(target: Path) -> Path | None:
    from llmdeploy_cli.distinfo import site_packages

    sites = site_packages(target)
    return sites[0] if sites else None


def _has_dist(site: Path | None, dist: str) -> bool:
    return any(n == dist for n, _ in _dists(site))


def _cuda_dists(site: Path | None) -> list[str]:
    bad = []
    for n, v in _dists(site):
        if n.startswith("nvidia-") and n != "nvidia-ml-py":
            bad.append(f"{n} {v}")
        elif n == "torch" and "+" in v and not v.endswith("+cpu"):
            bad.append(f"torch {v}")
    return sorted(bad)


def _python_version(target: Path) -> str | None:
    cfg = target / "pyvenv.cfg"
    try:
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    except OSError:
        pass
    return None
