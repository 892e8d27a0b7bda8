"""`llmctl doctor`: every check a profile needs before it is served, each with its fix.

No network: model files are looked up on disk (find_local), the engine through its
environment's files, the GPU through NVML or nvidia-smi, the port with a local bind.
Each check is a Problem with level pass, warn, fail or skip; any fail makes doctor exit 3.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmdeploy_cli.errors import Problem

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Backend, Plan
    from llmdeploy_cli.profile import Profile

# Engines that load only GGUF, and engines that can run with no GPU.
GGUF_ENGINES = frozenset({"llamacpp", "llama.cpp", "llama-cpp", "ollama"})
CPU_ENGINES = frozenset(
    {"transformers", "llamacpp", "llama.cpp", "llama-cpp", "ollama", "infinity"}
)
HF_ENGINES = frozenset({"vllm", "sglang", "lmdeploy", "transformers", "xinference", "infinity"})

HF_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


@dataclass
class DoctorReport:
    profile: str
    backend: str
    checks: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.level == "fail" for c in self.checks)

    def as_dict(self) -> dict:
        counts: dict[str, int] = {}
        for c in self.checks:
            counts[c.level] = counts.get(c.level, 0) + 1
        return {
            "profile": self.profile,
            "backend": self.backend,
            "ok": self.ok,
            "counts": counts,
            "checks": [c.as_dict() for c in self.checks],
        }


def run_doctor(
    path: str | Path,
    *,
    verify: bool = False,
    environ: Mapping[str, str] | None = None,
    gpu_query=None,
) -> DoctorReport:
    """Every check for one profile file. Raises ProfileError for an invalid profile."""
    from llmdeploy_cli.resolve import resolve

    environ = os.environ if environ is None else environ
    r = resolve(path, environ)
    profile, backend, plan = r.profile, r.backend, r.plan
    report = DoctorReport(profile.name, profile.backend)
    add = report.checks.extend

    model_dir, model_checks = _guard("model.files", lambda: check_model(profile), (None, []))
    add(model_checks)
    add(_guard("offline.env", lambda: check_offline(profile, plan, environ)))
    add(_guard("engine.installed", lambda: check_engine(backend, profile)))
    add([check_engine_flags(backend, profile, plan)])
    add(_guard("gpu", lambda: check_gpu(profile, model_dir, plan, gpu_query)))
    add(_guard("port", lambda: [check_port(profile, plan)]))
    if verify:
        from llmdeploy_cli.models.verify import verify_model_files

        add(_guard("verify", lambda: verify_model_files(model_dir)))
    return report


def _guard(name: str, fn, empty=None):
    """Run one check; a check that breaks (unreadable file, odd config) reports a fail
    instead of hiding every other check behind a traceback."""
    try:
        return fn()
    except (OSError, ValueError, KeyError, TypeError) as e:
        problem = Problem(
            name,
            "fail",
            f"the check could not run: {type(e).__name__}: {e}",
            fix="run again with --debug and report it if the cause is not clear",
        )
        return (None, [problem]) if empty is not None else [problem]


# -- model files ---------------------------------------------------------------------------


def check_model(profile: Profile) -> tuple[Path | None, list[Problem]]:
    from llmdeploy_cli.models.cache import find_local
    from llmdeploy_cli.models.completeness import model_dir_problems
    from llmdeploy_cli.models.inspect import inspect_model

    source = profile.model.source
    need_gguf = profile.backend in GGUF_ENGINES
    local = profile.model_path()
    if local is None:
        found = find_local(source, profile)
        if found is None:
            if profile.backend == "ollama":
                level = "fail" if profile.offline else "warn"
                return None, [
                    Problem(
                        "model.files",
                        level,
                        f"'{source}' is not in Ollama's model store (OLLAMA_MODELS or "
                        "~/.ollama/models)",
                        fix="serve pulls it when online; offline, copy the store from a "
                        "machine that has it (ollama pull there) or point model.source at a "
                        ".gguf file",
                    )
                ]
            level = "fail" if profile.offline else "warn"
            return None, [
                Problem(
                    "model.files",
                    level,
                    f"'{source}' is not in any local cache (Hugging Face, ModelScope, "
                    "Xinference, hub.cache_dir)"
                    + ("; offline: true forbids downloading it" if profile.offline else ""),
                    fix=(
                        "on a machine with network: llmctl pull PROFILE, llmctl pack PROFILE "
                        "-o model.tar; here: llmctl unpack model.tar --to DIR"
                        if profile.offline
                        else "the engine downloads it at first start; to fetch it now: "
                        "llmctl pull PROFILE"
                    ),
                )
            ]
        local = found
    problems = model_dir_problems(local, need_gguf=need_gguf)
    if profile.model.tokenizer:  # the tokenizer comes from elsewhere
        problems = [p for p in problems if p.check != "model.tokenizer"]
    if problems:
        return local, problems
    extra = _remote_code(profile, local)
    try:
        info = inspect_model(local)
        params = f"{info.params:,} params" if info.params else "params unknown"
        what = f"{info.architecture or info.model_type or info.format}, {params}, {info.dtype}"
        data = {k: v for k, v in info.as_dict().items() if k not in ("files",) and v is not None}
    except OSError:
        what, data = "complete", {}
    return local, [Problem("model.files", "pass", f"{local}: complete ({what})", data=data), *extra]


def _remote_code(profile: Profile, local: Path) -> list[Problem]:
    """A config whose classes live in the repository's own Python files needs
    trust_remote_code."""
    cfg_path = local / "config.json" if local.is_dir() else None
    if cfg_path is None or not cfg_path.is_file():
        return []
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if isinstance(cfg, dict) and cfg.get("auto_map") and not profile.model.trust_remote_code:
        return [
            Problem(
                "model.remote_code",
                "warn",
                "config.json maps its classes to the repository's own code (auto_map), and "
                "model.trust_remote_code is false",
                fix="set model.trust_remote_code: true if the engine has no built-in support "
                "for this architecture (read the code first)",
            )
        ]
    return []


# -- offline variables ---------------------------------------------------------------------


def offline_requirements(profile: Profile) -> dict[str, str]:
    """The variables (and values) this profile's engine needs to stay off the network."""
    engine = profile.backend
    need: dict[str, str] = {}
    if engine in HF_ENGINES or engine not in GGUF_ENGINES:
        need.update(HF_OFFLINE)
    modelscope = profile.hub.source == "modelscope"
    if engine == "vllm" and modelscope:
        need["VLLM_USE_MODELSCOPE"] = "true"
    if engine == "lmdeploy" and modelscope:
        need["LMDEPLOY_USE_MODELSCOPE"] = "True"
    if engine == "xinference":
        need["XINFERENCE_MODEL_SRC"] = "modelscope" if modelscope else "huggingface"
    if profile.hub.endpoint:
        need["HF_ENDPOINT"] = profile.hub.endpoint
    return need


def _same(name: str, have: str, want: str) -> bool:
    if name in HF_OFFLINE:  # huggingface_hub reads 1/ON/YES/TRUE as true
        return have.strip().upper() in ("1", "ON", "YES", "TRUE")
    if name in ("VLLM_USE_MODELSCOPE", "LMDEPLOY_USE_MODELSCOPE"):
        return have.strip().lower() == "true"
    return have.rstrip("/") == want.rstrip("/")


def check_offline(profile: Profile, plan: Plan, environ: Mapping[str, str]) -> list[Problem]:
    need = offline_requirements(profile)
    engine_env = {**environ, **plan.server.command.env}
    if profile.backend in GGUF_ENGINES and not need:
        return [Problem("offline.env", "pass", f"{profile.backend} loads local GGUF files")]
    if not profile.offline:
        wrong = [
            k
            for k, v in need.items()
            if k in ("VLLM_USE_MODELSCOPE", "HF_ENDPOINT", "XINFERENCE_MODEL_SRC")
            and not _same(k, engine_env.get(k, ""), v)
        ]
        out = [
            Problem(
                "offline.env",
                "pass",
                "offline: false: the engine may reach the model hub (set offline: true on an "
                "air-gapped machine)",
            )
        ]
        for k in wrong:
            out.append(
                Problem(
                    f"offline.env.{k}",
                    "warn",
                    f"{k} is {engine_env.get(k)!r} for the engine; the profile needs {need[k]!r}",
                    fix=f"set env.{k}: {need[k]!r} in the profile",
                )
            )
        return out
    out = []
    for k, v in need.items():
        have = engine_env.get(k)
        origin = "profile" if k in plan.server.command.env else "environment"
        if have is not None and _same(k, str(have), v):
            out.append(Problem(f"offline.env.{k}", "pass", f"{k}={have} ({origin})"))
        else:
            out.append(
                Problem(
                    f"offline.env.{k}",
                    "fail",
                    f"{k} is {'unset' if have is None else repr(str(have))}; the engine needs "
                    f"{k}={v} to stay offline",
                    fix=f"set env.{k}: {v!r} in the profile (offline: true sets the "
                    "Hugging Face ones)",
                )
            )
    return out


# -- engine --------------------------------------------------------------------------------


def check_engine(backend: Backend, profile: Profile) -> list[Problem]:
    from llmdeploy_cli.engine_env import detect_version, find_executable

    if not profile.server.managed:
        return [Problem("engine.installed", "skip", "server.managed: false: not started here")]
    exe = find_executable(backend, profile)
    if exe is None:
        return [
            Problem(
                "engine.installed",
                "fail",
                f"{profile.runtime.executable or backend.executable} not found"
                + (
                    f" in {profile.runtime.venv or profile.runtime.conda_env}"
                    if profile.runtime.venv or profile.runtime.conda_env
                    else " on PATH"
                ),
                fix=backend.install_hint or "install the engine, or set runtime.executable",
            )
        ]
    v = detect_version(backend, profile)
    level = "warn" if v.source == "newest-known" else "pass"
    return [
        Problem("engine.installed", "pass", f"{exe}", data={"path": exe}),
        Problem(
            "engine.version",
            level,
            f"{backend.name} {v.version} (from {v.source.split(':', 1)[0]})",
            fix=v.warning and "set runtime.engine_version or runtime.venv to pin it",
            data={"version": v.version, "source": v.source},
        ),
    ]


def check_engine_flags(backend: Backend, profile: Profile, plan: Plan) -> Problem:
    """Every rendered flag is an exact option of the engine's parser (llmdeploy_cli.flagcheck):
    the installed engine's own parser when its version was read from its environment, else
    llmctl's committed snapshot of the version rendered for."""
    from llmdeploy_cli.errors import PreflightError
    from llmdeploy_cli.flagcheck import check_resolved
    from llmdeploy_cli.resolve import Resolved, state_dir

    try:
        report = check_resolved(Resolved(profile, backend, plan), state_dir())
    except PreflightError as e:
        return Problem("engine.flags", "warn", e.message, fix=e.hint)
    if not report.checked:
        return Problem(
            "engine.flags",
            "skip",
            f"flags not checked: {report.source}",
            fix="install the engine where runtime points, or pin runtime.engine_version",
        )
    bad = [p for p in report.problems if p.level == "fail"]
    if bad:
        return Problem(
            "engine.flags",
            "fail",
            f"{len(bad)} rendered flag(s) rejected by {report.source}: "
            + "; ".join(p.message for p in bad[:3]),
            fix="fix the profile key or extra_args entry that produced them",
        )
    forwarded = [p for p in report.problems if p.level == "warn"]
    if forwarded:
        return Problem(
            "engine.flags",
            "warn",
            "; ".join(p.message for p in forwarded[:3]),
            fix="check these keys against the model's own parameters",
        )
    return Problem("engine.flags", "pass", f"every flag is exact for {report.source}")


# -- GPU -----------------------------------------------------------------------------------


def check_gpu(profile: Profile, model_dir: Path | None, plan: Plan, gpu_query=None) -> list:
    from llmdeploy_cli.models.gpus import query_gpus, visible_gpus
    from llmdeploy_cli.models.plan import memory_rule, plan_for
    from llmdeploy_cli.models.units import fmt_bytes

    if profile.resources.device == "cpu":
        return [Problem("gpu", "skip", "resources.device: cpu")]
    gpus, why = (gpu_query or query_gpus)()
    if not gpus:
        if profile.backend in CPU_ENGINES:
            return [
                Problem("gpu", "skip", f"no NVIDIA GPU ({why}); {profile.backend} can run on CPU")
            ]
        return [
            Problem(
                "gpu",
                "fail",
                f"no NVIDIA GPU found: {why}",
                fix="run on a machine with a GPU and its driver (nvidia-smi must work)",
            )
        ]
    devices = visible_gpus(profile, gpus)
    g = devices[0]
    out = [
        Problem(
            "gpu",
            "pass",
            f"{len(devices)} GPU(s): {g.name}, {fmt_bytes(g.total_bytes)}; driver {g.driver}, "
            f"CUDA {g.cuda}",
            data={"gpus": [vars(d) for d in devices]},
        )
    ]
    r = profile.resources
    need_gpus = r.tensor_parallel * r.pipeline_parallel
    if len(devices) < need_gpus:
        out.append(
            Problem(
                "gpu.count",
                "fail",
                f"tensor_parallel x pipeline_parallel = {need_gpus}, but {len(devices)} GPU(s) "
                "are visible",
                fix="lower resources.tensor_parallel, or set resources.visible_devices",
            )
        )
    if model_dir is None:
        out.append(Problem("gpu.memory", "skip", "the model is not on disk: no memory plan"))
        return out
    try:
        mp = plan_for(
            profile,
            g.total_bytes,
            len(devices),
            engine_version=plan.engine_version,
            model_dir=model_dir,
        )
    except Exception as e:  # noqa: BLE001 - a plan that cannot be made is a skip, not a crash
        out.append(Problem("gpu.memory", "skip", f"no memory plan: {e}"))
        return out
    need = memory_rule(profile.backend).gpu_need(mp)
    free = min(d.free_bytes for d in devices[: max(need_gpus, 1)])
    data = {"kv_cache_tokens": mp.kv_cache_tokens, "needs_bytes": need, "free_bytes": free}
    if not mp.fits:
        tips = "; ".join(f"{s['key']}: {s['value']}" for s in mp.suggestions[:3])
        out.append(
            Problem(
                "gpu.memory",
                "fail",
                f"the plan does not fit: {mp.kv_cache_tokens} KV tokens for max_model_len "
                f"{mp.max_model_len} (weights {fmt_bytes(mp.weights_per_gpu)} per GPU)",
                fix=tips or "see llmctl plan PROFILE",
                data=data,
            )
        )
    elif free < need:
        out.append(
            Problem(
                "gpu.memory",
                "fail",
                f"{fmt_bytes(free)} free on the GPU, the engine will take {fmt_bytes(need)} "
                f"({mp.budget_rule})",
                fix="stop what else uses the GPU (nvidia-smi lists it), or lower "
                "resources.gpu_memory_utilization",
                data=data,
            )
        )
    else:
        out.append(
            Problem(
                "gpu.memory",
                "pass",
                f"{fmt_bytes(free)} free, needs {fmt_bytes(need)}; about {mp.kv_cache_tokens:,} "
                f"KV tokens ({mp.concurrency:g} x max_model_len {mp.max_model_len})",
                data=data,
            )
        )
    return out


# -- port ----------------------------------------------------------------------------------


def check_port(profile: Profile, plan: Plan) -> Problem:
    from urllib.parse import urlsplit

    from llmdeploy_cli.netutil import port_in_use

    port = urlsplit(plan.endpoint.base_url).port
    if not profile.server.managed:
        return Problem("port", "skip", f"server.managed: false: port {port} is someone else's")
    if profile.server.port == "auto":
        return Problem("port", "pass", "port: auto picks a free port at start")
    host = profile.server.host
    try:
        busy = port_in_use(host, port)
    except OSError as e:
        return Problem(
            "port",
            "fail",
            f"cannot bind {host}:{port}: {e}",
            fix="check server.host is an address of this machine",
        )
    if busy:
        return Problem(
            "port",
            "fail",
            f"{host}:{port} is in use",
            fix=f"stop what holds it (ss -ltnp 'sport = :{port}'), or set server.port "
            "(or port: auto)",
        )
    return Problem("port", "pass", f"{host}:{port} is free")


__all__ = ["DoctorReport", "check_engine_flags", "run_doctor"]
