"""Reading installed distributions from an environment's site-packages, without importing
or running anything in it: which distributions, at which versions.

One name normalisation for every comparison (PEP 503: runs of `-`, `_`, `.` become one
`-`, lower case), so `Zope.Interface`, `zope_interface` and `zope-interface` are one name, as the
package indexes have it. A leaf: it imports nothing of llmctl.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from pathlib import Path

_SEP = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """'Zope.Interface' -> 'zope-interface' (PEP 503)."""
    return _SEP.sub("-", name).lower()


def site_packages(prefix: Path) -> list[Path]:
    """The site-packages folders of the environment at `prefix` (venv or conda)."""
    return [Path(p) for p in glob.glob(str(Path(prefix) / "lib" / "python*" / "site-packages"))]


def dists(site: Path | None) -> Iterator[tuple[str, str]]:
    """(normalised name, version) of every distribution installed in `site`."""
    for name, version, _ in _entries(site):
        yield name, version


def dist_version(site: Path, dist: str) -> tuple[str, Path] | None:
    """The version of distribution `dist` in `site`, with its dist-info folder, or None."""
    want = normalize(dist)
    for name, version, meta in _entries(site):
        if name == want and version:
            return version, meta
    return None


def _entries(site: Path | None) -> Iterator[tuple[str, str, Path]]:
    if site is None:
        return
    for meta in Path(site).glob("*.dist-info"):
        name, _, version = meta.name[: -len(".dist-info")].rpartition("-")
        yield normalize(name), version, meta


def version_tuple(v: str) -> tuple[int, ...]:
    """'0.18.0rc1' -> (0, 18, 0): enough to compare releases for flag changes."""
    parts = []
    for piece in v.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)
