"""Sampling sanity (doctor): the model's generation_config.json defaults beside what the
profile makes the server apply and what the smoke sends, and the trap of sampling values
set while greedy decoding is forced (or the reverse).

transformers' GenerationConfig.validate: with `do_sample: false` the sampling values
(temperature other than 1.0, top_p other than 1.0, top_k other than 50, min_p, typical_p)
are "only used in sample-based generation modes" and ignored: the model answers greedily on
an engine that honours do_sample, while an engine that reads only the values from the file
samples with them. The reverse, `do_sample: true` with `temperature: 0`, makes transformers
refuse to generate ("temperature has to be a strictly positive float").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmdeploy_cli.errors import Problem
from llmdeploy_cli.models.readers import read_json

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Backend
    from llmdeploy_cli.profile import Profile

SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "typical_p")
# transformers' GenerationConfig defaults: a value equal to these samples like no value.
NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": 50}
SHOWN = ("do_sample", *SAMPLING_KEYS, "repetition_penalty", "max_new_tokens")


def generation_defaults(model_dir: Path | None) -> dict[str, Any] | None:
    """The sampling keys of the model's generation_config.json, or None without one."""
    if model_dir is None or not Path(model_dir).is_dir():
        return None
    cfg, _ = read_json(Path(model_dir) / "generation_config.json")
    if not isinstance(cfg, dict):
        return None
    return {k: cfg[k] for k in SHOWN if k in cfg}


def _sampling_set(values: dict[str, Any]) -> dict[str, Any]:
    """The sampling values that change anything (not None, not transformers' neutral)."""
    return {
        k: values[k]
        for k in SAMPLING_KEYS
        if values.get(k) is not None and values.get(k) != NEUTRAL.get(k)
    }


def _show(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "nothing"


def check_sampling(profile: Profile, backend: Backend, model_dir: Path | None) -> list[Problem]:
    gen = generation_defaults(model_dir)
    served = backend.sampling_params(profile) if hasattr(backend, "sampling_params") else {}
    smoke_t = profile.smoke.temperature
    smoke = f"temperature={smoke_t}" + (" (greedy; no top_p/top_k)" if smoke_t == 0 else "")
    data = {"generation_config": gen, "profile": served, "smoke": {"temperature": smoke_t}}
    summary = (
        f"model defaults (generation_config.json): {_show(gen) if gen else 'none'}; "
        f"profile: {_show(served) if served else 'the engine defaults'}; smoke sends {smoke}"
    )
    found: list[Problem] = []
    if gen is not None:
        sampling = _sampling_set(gen)
        if gen.get("do_sample") is False and sampling:
            found.append(
                Problem(
                    "sampling.model",
                    "warn",
                    f"generation_config.json forces greedy decoding (do_sample: false) and "
                    f"sets {_show(sampling)}: an engine that honours do_sample ignores them, "
                    "one that reads only the values samples with them",
                    fix="send the sampling you want in each request (or set the engine's "
                    "defaults in the profile); fix the file: do_sample: true, or drop the values",
                    data=data,
                )
            )
        if gen.get("do_sample") is True and gen.get("temperature") == 0:
            found.append(
                Problem(
                    "sampling.model",
                    "warn",
                    "generation_config.json asks for sampling (do_sample: true) at "
                    "temperature 0: transformers refuses to generate with it (temperature must "
                    "be strictly positive) unless each request sets a temperature",
                    fix="set do_sample: false for greedy decoding, or a temperature above 0",
                    data=data,
                )
            )
    if served.get("temperature") == 0:
        ignored = ("top_p", "top_k", "min_p", "typical_p")
        pointless = {k: v for k, v in served.items() if k in ignored}
        if pointless:
            found.append(
                Problem(
                    "sampling.profile",
                    "warn",
                    f"the profile sets temperature 0 (greedy) and {_show(pointless)}: "
                    "greedy decoding ignores them",
                    fix="remove them, or set a temperature above 0 to sample",
                    data=data,
                )
            )
    return [Problem("sampling", "pass", summary, data=data), *found]
