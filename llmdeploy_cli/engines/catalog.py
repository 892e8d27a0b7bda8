"""What llmctl knows about installing each engine: the `install` recipe its backend declares.

One recipe per engine (llmdeploy_cli.capabilities.Recipe, set as `install` on the backend
class; NOT_SUPPORTED where llmctl cannot install the engine). An install is the recipe's
packages at one version, for one device, resolved against a committed constraints file
(NAME-VERSION[-DEVICE].txt in the recipe's constraints folder: the built-ins' are
data/constraints/) that pins every package, so the resolver has nothing to choose and
never backtracks. Each trap in a recipe's notes was hit by someone installing that engine
by hand; see docs/engines.md.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

from llmdeploy_cli.capabilities import Recipe

DEVICES = ("cpu", "cuda")


def recipe_for(name: str) -> Recipe | None:
    """The install recipe of backend `name` (name, distribution and executable filled in
    from the backend), or None: no such backend, or it declares no recipe."""
    from llmdeploy_cli import registry
    from llmdeploy_cli.capabilities import supported
    from llmdeploy_cli.errors import LlmctlError

    try:
        backend = registry.get(name)
    except LlmctlError:
        return None
    recipe = backend.install
    if not supported(recipe):
        return None
    return dataclasses.replace(
        recipe,
        name=backend.name,
        distribution=recipe.distribution or backend.distribution or "",
        executable=recipe.executable or backend.executable,
    )


def installable() -> list[str]:
    """Registered backends that declare an install recipe."""
    from llmdeploy_cli import registry

    return [n for n in registry.names() if recipe_for(n) is not None]


def __getattr__(attr: str):
    # RECIPES: the recipes of every registered backend that declares one (read lazily, so
    # importing this module loads no backend).
    if attr == "RECIPES":
        return {n: r for n in installable() if (r := recipe_for(n)) is not None}
    raise AttributeError(attr)


def get(name: str) -> Recipe:
    from llmdeploy_cli.errors import UsageError

    recipe = recipe_for(name)
    if recipe is None:
        raise UsageError(
            f"no install recipe for engine '{name}'",
            hint=f"known engines: {', '.join(installable())}",
        )
    return recipe


def _folder(recipe: Recipe | None):
    where = recipe.constraints if recipe is not None else Recipe.constraints
    package, _, folder = where.partition(":")
    return resources.files(package) / folder


def constraints_name(name: str, version: str, device: str) -> str | None:
    """The committed constraints file for this install, device-specific first."""
    folder = _folder(recipe_for(name))
    for stem in (f"{name}-{version}-{device}", f"{name}-{version}"):
        if (folder / f"{stem}.txt").is_file():
            return f"{stem}.txt"
    return None


def constraints_text(filename: str, name: str | None = None) -> str:
    """A committed constraints file's text (from engine `name`'s recipe folder; default:
    the engine the file name starts with)."""
    name = name or filename.split("-", 1)[0]
    return (_folder(recipe_for(name)) / filename).read_text()


def pinned_files(name: str) -> list[str]:
    """Stems of the committed constraints files for `name`: ['xinference-4.1.0-cpu']."""
    folder = _folder(recipe_for(name))
    if not folder.is_dir():
        return []
    return sorted(
        e.name.removesuffix(".txt")
        for e in folder.iterdir()
        if e.name.startswith(name + "-") and e.name.endswith(".txt")
    )
