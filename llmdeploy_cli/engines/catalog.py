"""What llmctl knows about installing each engine: packages, torch pins, devices, traps.

One recipe per engine. An install is the recipe's packages at one version, for one device,
resolved against a committed constraints file (data/constraints/NAME-VERSION[-DEVICE].txt)
that pins every package, so the resolver has nothing to choose and never backtracks.
Each trap below was hit by someone installing these engines by hand; see docs/engines.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

DEVICES = ("cpu", "cuda")
CPU_TORCH = "2.13.0"  # the CPU build the project's own .venv uses (Makefile)


@dataclass(frozen=True)
class Recipe:
    name: str
    distribution: str  # whose dist-info version `engine list` reads
    default_version: str
    executable: str
    devices: tuple[str, ...]
    # Requirements after torch, `{version}` filled in. Kept as small as the served task
    # needs: the big "[all]"-style extras pull video/audio/quantization stacks.
    packages: tuple[str, ...]
    # The torch installed first, per device (None: let the engine's own pins choose).
    torch: dict[str, str | None] = field(default_factory=dict)
    prefer_uv: bool = False  # pip alone is known to fail on this engine's pins
    notes: tuple[str, ...] = ()

    def requirements(self, version: str) -> list[str]:
        return [p.format(version=version) for p in self.packages]

    def install_requirements(self, version: str, device: str) -> list[str]:
        """Everything an install asks for: the torch it installs first, then the packages."""
        torch = self.torch.get(device)
        return ([f"torch=={torch}"] if torch else []) + self.requirements(version)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="xinference",
            distribution="xinference",
            default_version="4.1.0",
            executable="xinference-local",
            devices=("cpu", "cuda"),
            # The transformers engine's needs out of xinference[transformers]: that extra
            # also pulls decord, pytorchvideo, bitsandbytes, optimum and audio libraries
            # (140 packages instead of 99), none of which a text model needs.
            packages=(
                "xinference=={version}",
                "transformers",
                "accelerate",
                "sentencepiece",
                "tiktoken",
                "protobuf",
            ),
            torch={"cpu": CPU_TORCH, "cuda": None},
            notes=(
                "xinference depends on timm, which pulls torchvision: the index's build is "
                "for CUDA torch and does not load with a CPU torch; llmctl removes it on CPU",
                "4.x creates a virtualenv per launched model by default "
                "(XINFERENCE_ENABLE_VIRTUAL_ENV): set it to 0 to use this env as it is",
            ),
        ),
        Recipe(
            name="vllm",
            distribution="vllm",
            default_version="0.33.0",
            executable="vllm",
            devices=("cuda",),
            packages=("vllm=={version}",),
            torch={"cuda": None},  # vLLM pins its own torch exactly
            prefer_uv=True,
            notes=("vLLM's exact pins may not resolve with plain pip: install uv",),
        ),
        Recipe(
            name="lmdeploy",
            distribution="lmdeploy",
            default_version="0.18.0",
            executable="lmdeploy",
            devices=("cuda",),
            packages=("lmdeploy=={version}",),
            torch={"cuda": "2.12.1"},  # lmdeploy pins torch <= 2.12.1
            notes=("lmdeploy pins torch <= 2.12.1: it cannot share an env with a newer torch",),
        ),
        Recipe(
            name="sglang",
            distribution="sglang",
            default_version="0.5.19",
            executable="python",
            devices=("cuda",),
            packages=("sglang[srt]=={version}",),
            torch={"cuda": None},
            prefer_uv=True,
        ),
        Recipe(
            name="transformers",
            distribution="transformers",
            default_version="5.23.0",
            executable="transformers",
            devices=("cpu", "cuda"),
            packages=("transformers[serving]=={version}",),
            torch={"cpu": CPU_TORCH, "cuda": None},
        ),
        Recipe(
            name="infinity",
            distribution="infinity-emb",
            default_version="0.0.78",
            executable="infinity_emb",
            devices=("cpu", "cuda"),
            packages=("infinity-emb[server,torch]=={version}",),
            torch={"cpu": CPU_TORCH, "cuda": None},
            notes=("infinity pins transformers 4.57 and numpy < 2: it needs its own env",),
        ),
    )
}


def get(name: str) -> Recipe:
    from llmdeploy_cli.errors import UsageError

    try:
        return RECIPES[name]
    except KeyError:
        raise UsageError(
            f"no install recipe for engine '{name}'",
            hint=f"known engines: {', '.join(sorted(RECIPES))}",
        ) from None


def constraints_name(name: str, version: str, device: str) -> str | None:
    """The committed constraints file for this install, device-specific first."""
    folder = resources.files("llmdeploy_cli") / "data" / "constraints"
    for stem in (f"{name}-{version}-{device}", f"{name}-{version}"):
        if (folder / f"{stem}.txt").is_file():
            return f"{stem}.txt"
    return None


def constraints_text(filename: str) -> str:
    return (resources.files("llmdeploy_cli") / "data" / "constraints" / filename).read_text()


def pinned_files(name: str) -> list[str]:
    """Stems of the committed constraints files for `name`: ['xinference-4.1.0-cpu']."""
    folder = resources.files("llmdeploy_cli") / "data" / "constraints"
    return sorted(
        e.name.removesuffix(".txt")
        for e in folder.iterdir()
        if e.name.startswith(name + "-") and e.name.endswith(".txt")
    )
