"""The backend plugin interface (docs/design.md §3).

A backend turns a Profile into a Plan (argv, env, generated files, the endpoint) without
side effects, so every backend is covered by golden tests on any machine. The runtime side
(probe, after_ready, stop_plan) is small and uses the httpx client the core hands it.

Plugins register under the `llmctl.backends` entry-point group; the core never imports a
backend module directly.
"""

from __future__ import annotations

import enum
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from llmdeploy_cli.capabilities import HF_OFFLINE, NOT_SUPPORTED, UNDECLARED, supported
from llmdeploy_cli.command import Command, GeneratedFile, Secret, Step, looks_secret
from llmdeploy_cli.errors import LlmctlError, ProfileError, ProfileIssue

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from llmdeploy_cli.profile import Profile


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Endpoint:
    """Where and how to talk to the served model."""

    base_url: str  # http://127.0.0.1:8000/v1 (OpenAI-compatible root)
    model: str  # the exact string requests must carry in `model`
    health_url: str | None = None
    api_key_env: str | None = None
    task: str = "chat"

    def as_dict(self) -> dict:
        d = {"base_url": self.base_url, "model": self.model, "task": self.task}
        if self.health_url:
            d["health_url"] = self.health_url
        if self.api_key_env:
            d["api_key_env"] = self.api_key_env
        return d

    def api_key(self, environ: Mapping[str, str] | None = None) -> Secret | None:
        if not self.api_key_env:
            return None
        value = (os.environ if environ is None else environ).get(self.api_key_env)
        return Secret(value) if value else None


@dataclass(frozen=True)
class Plan:
    """Everything `llmctl render` shows and `llmctl serve` runs."""

    steps: list[Step]
    endpoint: Endpoint
    files: list[GeneratedFile] = field(default_factory=list)
    engine_version: str | None = None
    version_source: str | None = None  # dist-info, profile, newest-known
    warnings: list[str] = field(default_factory=list)

    @property
    def server(self) -> Step:
        return self.steps[0]

    def secrets(self) -> set[str]:
        out: set[str] = set()
        for s in self.steps:
            out |= s.command.secrets()
        return out

    def as_dict(self) -> dict:
        return {
            "steps": [s.as_dict() for s in self.steps],
            "files": [f.as_dict() for f in self.files],
            "endpoint": self.endpoint.as_dict(),
            "engine_version": self.engine_version,
            "version_source": self.version_source,
            "warnings": list(self.warnings),
        }


class Readiness(enum.Enum):
    DOWN = "down"  # nothing answers (connection refused)
    LOADING = "loading"  # answers, but not serving yet (503, model not listed)
    READY = "ready"


@dataclass(frozen=True)
class Probe:
    state: Readiness
    why: str = ""


@dataclass(frozen=True)
class StopPlan:
    signal: int = signal.SIGTERM
    grace_s: float = 15.0


@dataclass(frozen=True)
class RenderContext:
    """What a pure build needs from the outside world, passed in so tests can fix it."""

    engine_version: str
    version_source: str = "newest-known"
    environ: Mapping[str, str] = field(default_factory=dict)
    state_dir: str = "~/.local/state/llmctl"
    port: int | None = None  # resolved port (for port: auto)

    def secret(self, env_name: str | None) -> Secret | None:
        """The value of a secret environment variable, or a placeholder when unset.

        Rendering is static: a missing key still renders (as ***); preflight refuses it.
        """
        if not env_name:
            return None
        return Secret(self.environ.get(env_name, "") or f"${{{env_name}}}")


class Backend:
    """Base class for engine plugins. Subclasses set the ClassVars and build()."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    default_port: ClassVar[int]
    executable: ClassVar[str]  # looked up on PATH / in the profile's runtime env
    distribution: ClassVar[str | None] = None  # Python distribution whose version we read
    newest_known: ClassVar[str]  # rendered against when the version cannot be found
    # The oldest engine version that takes what build() renders (doctor fails an older
    # installed one, naming this); None: no minimum known.
    min_version: ClassVar[str | None] = None
    # The engine's own names for what a common key sets (option name -> dotted common
    # key): `options.num_ctx` is refused with "use resources.max_model_len". A common key's
    # own last part (options.max_model_len) needs no entry.
    option_keys: ClassVar[dict[str, str]] = {}
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Common profile keys this backend translates. A key set in the profile that is in
    # COMMON_KEYS but not here is refused, naming the backend (never silently dropped).
    supports: ClassVar[frozenset[str]] = frozenset()
    # What to do instead, per refused common key (dotted): replaces the generic "remove it"
    # hint, e.g. LMDeploy's gpu_memory_utilization -> options.cache_max_entry_count.
    refused_hints: ClassVar[dict[str, str]] = {}
    install_hint: ClassVar[str] = ""
    # Default phase deadlines in seconds (start, load, completion); the profile overrides.
    timeouts: ClassVar[tuple[float, float, float]] = (600.0, 600.0, 300.0)
    # False when GET /v1/models never lists the served model (transformers serve with a
    # local directory): readiness then goes from health straight to a real completion.
    lists_models: ClassVar[bool] = True

    # -- declared capabilities (llmdeploy_cli/capabilities.py) -----------------------------
    # Every backend sets each one; NOT_SUPPORTED says the engine lacks it. The contract
    # test fails for a registered backend that leaves one UNDECLARED.
    model_formats: ClassVar[Any] = UNDECLARED  # frozenset[ModelFormat] | NOT_SUPPORTED
    tasks: ClassVar[Any] = UNDECLARED  # frozenset[Task] | NOT_SUPPORTED
    runs_on_cpu: ClassVar[Any] = UNDECLARED  # bool
    container: ClassVar[Any] = UNDECLARED  # ContainerSpec | NOT_SUPPORTED
    install: ClassVar[Any] = UNDECLARED  # Recipe | NOT_SUPPORTED
    hub: ClassVar[Any] = UNDECLARED  # HubVars
    flag_source: ClassVar[Any] = UNDECLARED  # FlagSource | NOT_SUPPORTED
    memory: ClassVar[Any] = UNDECLARED  # a memory rule of llmdeploy_cli.models

    def capability(self, name: str) -> Any:
        """A declared capability (possibly NOT_SUPPORTED), or a clear error when the backend
        left it undeclared."""
        value = getattr(self, name, UNDECLARED)
        if value is UNDECLARED:
            raise LlmctlError(
                f"backend '{self.name}' does not declare its {name} capability",
                hint="the plugin must set it (NOT_SUPPORTED when its engine lacks it); "
                "see docs/writing-a-backend.md",
            )
        return value

    # -- static side ----------------------------------------------------------------------
    def options(self, profile: Profile) -> BaseModel:
        try:
            return self.Options.model_validate(profile.options)
        except ValidationError as e:
            raise ProfileError([_option_issue(self, profile, err) for err in e.errors()]) from None

    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        """Static checks beyond the schema: keys this engine cannot honour, version traps."""
        issues = []
        for key in sorted(profile.set_keys() & COMMON_KEYS - self.supports):
            loc = tuple(key.split("."))
            issues.append(
                profile.issue(
                    loc,
                    f"backend '{self.name}' cannot honour this key",
                    hint=self.refused_hints.get(
                        key, "remove it, or pass the engine's own flag in extra_args"
                    ),
                )
            )
        return issues

    def port(self, profile: Profile, ctx: RenderContext) -> int:
        if ctx.port is not None:
            return ctx.port
        p = profile.server.port
        return p if isinstance(p, int) else self.default_port

    def endpoint(self, profile: Profile, ctx: RenderContext) -> Endpoint:
        host = _client_host(profile.server.host)
        base = f"http://{host}:{self.port(profile, ctx)}"
        return Endpoint(
            base_url=f"{base}/v1",
            model=profile.served_name,
            health_url=f"{base}/health",
            api_key_env=profile.server.api_key_env,
            task=profile.model.task,
        )

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:  # pragma: no cover
        raise NotImplementedError

    def model_arg(self, profile: Profile) -> str:
        """The model as the engine's command line takes it: a local path made absolute, else
        the hub id or pull name as written."""
        local = profile.model_path()
        return str(local) if local is not None else profile.model.source

    def server_plan(
        self,
        profile: Profile,
        ctx: RenderContext,
        argv: list[str],
        env: dict[str, str],
        warnings: list[str] | None = None,
    ) -> Plan:
        """The plan of a backend whose only step is its server process."""
        return Plan(
            steps=[Step("server", Command(argv, env))],
            endpoint=self.endpoint(profile, ctx),
            engine_version=ctx.engine_version,
            version_source=ctx.version_source,
            warnings=list(warnings or []),
        )

    def base_env(self, profile: Profile, ctx: RenderContext) -> dict[str, str]:
        """Environment every engine gets from the common keys: offline, hub, devices, env."""
        env: dict[str, str] = {}
        hub = profile.hub
        if hub.endpoint:
            env["HF_ENDPOINT"] = hub.endpoint
        if hub.cache_dir:
            env["HF_HOME"] = profile_relative(profile, hub.cache_dir)
        if hub.token_env:
            env["HF_TOKEN"] = ctx.secret(hub.token_env)
        hubvars = self.hub if supported(self.hub) else None
        if profile.offline:
            env.update(hubvars.offline if hubvars is not None else OFFLINE_ENV)
        devices = profile.resources.visible_devices
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = (
                devices if isinstance(devices, str) else ",".join(str(d) for d in devices)
            )
        for k, v in profile.env.items():
            env[k] = Secret(v) if looks_secret(k) and v else v
        # The declared hub variables (HubVars) win over env: what doctor checks is set.
        if hubvars is not None:
            if hub.source == "modelscope" and supported(hubvars.modelscope):
                env.update(hubvars.modelscope)
            if hubvars.source_env:
                env[hubvars.source_env] = hub.source
        return env

    # -- runtime side ---------------------------------------------------------------------
    def probe(self, client: httpx.Client, endpoint: Endpoint) -> Probe:
        """One health poll: 200 is up; any other answer (503 while loading or warming up)
        is loading; refused is down (many engines open their port only after loading: the
        supervisor tells "down" from "loading" by the process being alive)."""
        import httpx

        from llmdeploy_cli.openai_http.failures import classify

        url = endpoint.health_url or endpoint.base_url + "/models"
        path = "/" + url.split("/", 3)[-1] if url.count("/") >= 3 else url
        try:
            r = client.get(url)
        except httpx.TransportError as e:
            return Probe(Readiness.DOWN, classify(e).kind)
        if r.status_code == 200:
            return Probe(Readiness.READY, f"{path} 200")
        said = _server_message(r)
        return Probe(Readiness.LOADING, f"{path} {r.status_code}" + (f" ({said})" if said else ""))

    def model_listed(self, client: httpx.Client, endpoint: Endpoint) -> Probe:
        """Is the model listed in GET /v1/models under the exact name requests will use?"""
        import httpx

        from llmdeploy_cli.openai_http.failures import classify
        from llmdeploy_cli.openai_http.wire import model_ids

        try:
            r = client.get(endpoint.base_url + "/models")
        except httpx.TransportError as e:
            return Probe(Readiness.DOWN, classify(e).kind)
        if r.status_code != 200:
            return Probe(Readiness.LOADING, f"/v1/models answered {r.status_code}")
        try:
            ids = model_ids(r.json())
        except ValueError:
            ids = None
        if ids is None:
            return Probe(Readiness.LOADING, "/v1/models did not return a model list")
        if endpoint.model in ids:
            return Probe(Readiness.READY, f"model '{endpoint.model}' listed")
        return Probe(Readiness.LOADING, f"model '{endpoint.model}' not listed yet (have {ids})")

    def after_ready(self, client: httpx.Client, plan: Plan, profile: Profile, report) -> None:
        """Run the plan's action steps once the server answers.

        Default: run each action step's argv (never through a shell) and fail with its last
        output lines. Backends that act through an API (Ollama) override this.
        `report(message, fraction_or_None)` is how a long action shows progress.
        """
        import subprocess

        from llmdeploy_cli.command import scrub
        from llmdeploy_cli.errors import LlmctlError

        for step in plan.steps[1:]:
            if step.kind != "action":
                continue
            report(f"{step.name}: {step.command.display()}", None)
            env = {**os.environ, **step.command.env}
            try:
                proc = subprocess.run(
                    list(step.command.argv),
                    env=env,
                    cwd=step.command.cwd,
                    capture_output=True,
                    text=True,
                    timeout=self.timeouts[1],
                )
            except FileNotFoundError:
                raise LlmctlError(
                    f"{step.name}: executable not found: {step.command.argv[0]}",
                    hint=self.install_hint or None,
                ) from None
            except subprocess.TimeoutExpired:
                raise LlmctlError(
                    f"{step.name}: did not finish in {self.timeouts[1]:.0f} s"
                ) from None
            if proc.returncode != 0:
                tail = scrub((proc.stdout + proc.stderr).strip(), plan.secrets())[-2000:]
                last = tail.splitlines()[-1] if tail else ""
                raise LlmctlError(
                    f"{step.name} failed (exit {proc.returncode}): {last}",
                    hint=tail or None,
                )

    def stop_plan(self, profile: Profile) -> StopPlan:
        return StopPlan()

    def extra_env_for_serve(self, profile: Profile, state_dir: str) -> dict[str, str]:
        """Environment only serve sets (per-run paths under the state dir)."""
        return {}

    def sampling_params(self, profile: Profile) -> dict[str, Any]:
        """Sampling defaults the profile makes the server apply to every request (Ollama's
        Modelfile PARAMETERs): doctor shows them beside the model's generation_config.json.
        Empty: the engine's own defaults."""
        return {}


# Keys that each backend must either translate or refuse.
COMMON_KEYS = frozenset(
    {
        "model.served_name",
        "model.revision",
        "model.dtype",
        "model.trust_remote_code",
        "model.quantization",
        "model.tokenizer",
        "model.chat_template",
        "model.reasoning_parser",
        "model.tool_call_parser",
        "server.api_key_env",
        "resources.device",
        "resources.gpu_memory_utilization",
        "resources.max_model_len",
        "resources.max_num_seqs",
        "resources.max_num_batched_tokens",
        "resources.tensor_parallel",
        "resources.pipeline_parallel",
        "resources.kv_cache_dtype",
    }
)

OFFLINE_ENV = dict(HF_OFFLINE)


def _server_message(r) -> str:
    """What a non-200 answer says (llama.cpp: {"error": {"message": "Loading model"}})."""
    from llmdeploy_cli.openai_http.wire import error_text, loads

    try:
        doc = loads(r.content)
    except ValueError:
        return r.text.strip()[:80]
    said = isinstance(doc, dict) and any(k in doc for k in ("error", "detail", "message", "status"))
    return error_text(doc, 80) if said else ""


def _client_host(bind: str) -> str:
    """Where a client on this machine reaches a server bound to `bind`."""
    if bind in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    if bind == "::":
        return "[::1]"
    if ":" in bind and not bind.startswith("["):
        return f"[{bind}]"
    return bind


def _option_issue(backend: Backend, profile: Profile, err: dict[str, Any]) -> ProfileIssue:
    import difflib

    loc = ("options", *err["loc"])
    if err["type"] == "extra_forbidden":
        common = common_key_for(backend, str(err["loc"][-1]))
        if common is not None and common in backend.supports:
            return profile.issue(
                loc,
                f"not an option of backend '{backend.name}': the common key {common} sets it",
                f"use {common} instead (llmctl renders the engine's own flag for it)",
            )
        if common is not None:
            return profile.issue(
                loc,
                f"not an option of backend '{backend.name}' (it is what {common} sets)",
                f"backend '{backend.name}' cannot honour {common}: remove the option",
            )
        names = [f.alias or n for n, f in backend.Options.model_fields.items()]
        close = difflib.get_close_matches(str(err["loc"][-1]), names, n=1, cutoff=0.6)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else (f"its options: {', '.join(sorted(names))}" if names else "it takes no options")
        )
        return profile.issue(loc, f"not an option of backend '{backend.name}'", hint)
    msg = err["msg"].removeprefix("Value error, ")
    return profile.issue(loc, f"{msg} (got {err.get('input')!r})")


def profile_relative(profile: Profile, raw: str) -> str:
    """A path key of the profile as the engine gets it: ~ expanded, a relative path joined
    to the profile file's folder (docs/profiles.md), not to wherever llmctl runs."""
    p = os.path.expanduser(raw)
    if not os.path.isabs(p) and profile.path is not None:
        p = os.path.normpath(os.path.join(profile.path.parent, p))
    return p


def common_key_for(backend: Backend, option: str) -> str | None:
    """The common key an engine option name stands for (the backend's option_keys, else a
    common key's own last part), or None."""
    name = option.strip().lstrip("-").replace("-", "_")
    declared = getattr(backend, "option_keys", None) or {}
    if name in declared:
        return declared[name]
    for key in sorted(COMMON_KEYS):
        if key.rsplit(".", 1)[-1] == name:
            return key
    return None


def negatable_flag(argv: list, name: str, value: bool | None) -> None:
    """A `--x/--no-x` pair (argparse BooleanOptionalAction, Typer bools): True -> --x,
    False -> --no-x, None -> nothing (the engine's default)."""
    if value is None:
        return
    argv.append(name if value else "--no-" + name[2:])


def flag(argv: list, name: str, value) -> None:
    """Append `name value` when value is set; booleans become a bare flag when true."""
    if value is None or value is False:
        return
    if value is True:
        argv.append(name)
    else:
        argv.extend([name, value if isinstance(value, str) else str(value)])


__all__ = [
    "Backend",
    "COMMON_KEYS",
    "Command",
    "Endpoint",
    "GeneratedFile",
    "NOT_SUPPORTED",
    "NoOptions",
    "OFFLINE_ENV",
    "Plan",
    "Probe",
    "Readiness",
    "RenderContext",
    "Secret",
    "Step",
    "StopPlan",
    "flag",
    "negatable_flag",
]
