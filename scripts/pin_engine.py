"""Write the committed constraints file that `llmctl engine install` pins an engine with.

    .venv/bin/python scripts/pin_engine.py vllm 0.33.0 [--device cuda] [--python 3.11]

Resolves what the install asks for (the torch the recipe installs first, then the recipe's
packages at VERSION) once with `uv pip compile --universal`, so the file carries a pin for
every package on every platform and Python from --python up (with markers where they
differ), and writes llmdeploy_cli/data/constraints/NAME-VERSION-DEVICE.txt. The indexes
are pip's own configuration, as `llmctl engine install` passes them to uv.

For --device cuda only: a CPU torch is a local build (torch==X+cpu) that a universal
resolution cannot pin for every platform; CPU files are made from a real install
(docs/engines.md). tests/engines/test_constraints.py checks every committed file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmdeploy_cli.engines import catalog  # noqa: E402
from llmdeploy_cli.engines.install import pip_index_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("version")
    ap.add_argument("--device", default="cuda", choices=["cuda"])
    ap.add_argument("--python", default="3.11", help="lowest Python the file covers")
    args = ap.parse_args(argv)

    recipe = catalog.get(args.name)
    if args.device not in recipe.devices:
        sys.exit(f"{args.name} installs for {', '.join(recipe.devices)}, not {args.device}")
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        sys.exit("needs uv (pip install uv)")
    reqs = recipe.install_requirements(args.version, args.device)
    out = ROOT / "llmdeploy_cli" / "data" / "constraints"
    out = out / f"{args.name}-{args.version}-{args.device}.txt"
    with tempfile.TemporaryDirectory() as tmp:
        req_file = Path(tmp) / "requirements.in"
        req_file.write_text("\n".join(reqs) + "\n")
        resolved = Path(tmp) / "resolved.txt"
        cmd = [
            uv, "pip", "compile", str(req_file), "--universal",
            "--python-version", args.python, "--no-header", "--no-annotate", "--quiet",
            *pip_index_args(), "-o", str(resolved),
        ]  # fmt: skip
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        rc = subprocess.run(cmd, env=env).returncode
        if rc != 0:
            return rc
        pins = [ln for ln in resolved.read_text().splitlines() if ln and not ln.startswith("#")]
    header = [
        f"# {recipe.distribution} {args.version} for {args.device} "
        f"(llmctl engine install {args.name} --version {args.version} --device {args.device}).",
        f"# Resolved once from: {' '.join(reqs)}",
        f"# with `uv pip compile --universal --python-version {args.python}`: every package",
        "# pinned, on every platform and Python from that version up (markers where they",
        "# differ), so the resolver has nothing to choose. Regenerate: scripts/pin_engine.py.",
    ]
    out.write_text("\n".join(header + pins) + "\n")
    print(f"wrote {out.relative_to(ROOT)}: {len(pins)} pins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
