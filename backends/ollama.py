"""Ollama: `ollama serve`, then the model is pulled or created and preloaded (Ollama 0.32).

Facts this relies on, read in Ollama v0.32.15 (source and docs) and ollama-python 0.6:
- envconfig/config.go: the server is configured by environment only. OLLAMA_HOST
  (default 127.0.0.1:11434), OLLAMA_MODELS, OLLAMA_CONTEXT_LENGTH (default context for
  every model), OLLAMA_KEEP_ALIVE (Go duration or integer seconds, negative = forever),
  OLLAMA_NUM_PARALLEL (default 1), OLLAMA_MAX_LOADED_MODELS, OLLAMA_MAX_QUEUE (512),
  OLLAMA_FLASH_ATTENTION (bool), OLLAMA_KV_CACHE_TYPE, OLLAMA_ORIGINS (comma list),
  OLLAMA_NO_CLOUD. There is no API key setting: Ollama does not check keys.
- docs/faq.mdx and fs/ggml/ggml.go SupportsKVCacheType: K/V cache types f16 (default),
  q8_0, q4_0; a quantized cache needs flash attention.
- cmd/cmd.go: `ollama serve` takes no arguments (cobra.ExactArgs(0)); `ollama pull NAME`;
  `ollama create NAME -f Modelfile [-q QUANT]`; `ollama run --keepalive D NAME ""`.
- parser/parser.go + docs/modelfile.mdx: FROM (a GGUF file, a directory of *.gguf, or a
  model name), PARAMETER, TEMPLATE (Go template), SYSTEM; `\"\"\"` quotes multi-line
  values. `ollama create` uploads each file as a blob (POST /api/blobs/sha256:...) and
  sends /api/create {"model", "files": {basename: digest} | "from", "parameters", ...}.
- api/types.go Options/Runner: the PARAMETER names and their types (PARAMETERS below).
- docs/api.md "Model names": the tag defaults to `latest`; /api/tags and /v1/models
  (openai.ToListCompletion) list `name:tag`, so requests must say `name:latest`.
- server/routes.go: GET / answers "Ollama is running"; an unknown model is 404
  {"error": "model 'x' not found"}; a failed pull streams {"error": "pull model
  manifest: file does not exist"}. docs/faq.mdx: POST /api/generate {"model": M}
  loads M (preload); `keep_alive` overrides OLLAMA_KEEP_ALIVE.
- The OpenAI-compatible API cannot set num_ctx: the context length of the served model is
  a Modelfile `PARAMETER num_ctx` (or the server-wide OLLAMA_CONTEXT_LENGTH).
- ollama-python `_client.py`: create(model, quantize, from_, files, template, license,
  system, parameters, messages, stream) since 0.4.6; pull(model, stream=True) yields
  ProgressResponse(status, digest, total, completed); errors raise ResponseError(error,
  status_code), a refused connection raises ConnectionError.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmdeploy_cli.backend import (
    OFFLINE_ENV,
    Backend,
    Command,
    Endpoint,
    GeneratedFile,
    Plan,
    Probe,
    Readiness,
    RenderContext,
    Secret,
    Step,
)
from llmdeploy_cli.command import looks_secret
from llmdeploy_cli.engine_env import executable_for_argv
from llmdeploy_cli.errors import LlmctlError, PreflightError, ProfileIssue, UnreachableError
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    import httpx

VIA = "ollama client library"
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
# `ollama create --quantize` / /api/create "quantize" (docs/api.md, Quantization types).
QUANTIZE_TYPES = ("q4_K_M", "q4_K_S", "q8_0")

# Modelfile PARAMETER names and types (api/types.go Options + Runner, Ollama 0.32).
PARAMETERS: dict[str, type] = {
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
    "draft_num_predict": int,
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "repeat_last_n": int,
    "temperature": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": list,
}

# A Go time.ParseDuration string ("5m", "1h30m", "-1m", "0").
_GO_DURATION = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")
# One part of an Ollama model name (types/model/name.go isValidPart).
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME = re.compile(rf"^({_PART}/){{0,2}}{_PART}(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,79}})?$")

# Keys that only configure the server process: meaningless when someone else runs it.
SERVER_ONLY_KEYS = {
    "resources.max_num_seqs": "OLLAMA_NUM_PARALLEL",
    "resources.kv_cache_dtype": "OLLAMA_KV_CACHE_TYPE",
    "resources.visible_devices": "CUDA_VISIBLE_DEVICES",
    "hub.cache_dir": "OLLAMA_MODELS",
    "options.models_dir": "OLLAMA_MODELS",
    "options.context_length": "OLLAMA_CONTEXT_LENGTH",
    "options.max_loaded_models": "OLLAMA_MAX_LOADED_MODELS",
    "options.max_queue": "OLLAMA_MAX_QUEUE",
    "options.flash_attention": "OLLAMA_FLASH_ATTENTION",
    "options.origins": "OLLAMA_ORIGINS",
    "options.no_cloud": "OLLAMA_NO_CLOUD",
    "env": "the variables in env",
}

# Better hints than the generic one for common keys Ollama cannot honour.
HINTS = {
    "server.api_key_env": "Ollama has no API key of its own; to require one, put a reverse "
    "proxy that checks keys in front of it (docs/backends/ollama.md)",
    "model.chat_template": "Ollama templates are Go templates, not Jinja: put one in "
    "options.template (written to the Modelfile as TEMPLATE)",
    "resources.gpu_memory_utilization": "Ollama fits layers to free memory by itself; "
    "reserve memory with env OLLAMA_GPU_OVERHEAD (bytes) or limit layers with "
    "options.parameters.num_gpu",
    "resources.tensor_parallel": "Ollama splits a model that does not fit one GPU across "
    "all visible GPUs by itself; see env OLLAMA_SCHED_SPREAD",
    "model.dtype": "an Ollama model's precision is fixed by its GGUF file; re-quantize with "
    "model.quantization (ollama create --quantize)",
    "model.revision": "pin a version with the tag of the name instead (name:tag)",
}


def _check_text(v: str | None) -> str | None:
    if v is not None and '"""' in v:
        raise ValueError('cannot contain """ (the Modelfile quote)')
    return v


class OllamaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models_dir: str | None = Field(
        None, description="Model store (OLLAMA_MODELS); default ~/.ollama/models"
    )
    context_length: int | None = Field(
        None, gt=0, description="Server-wide default context (OLLAMA_CONTEXT_LENGTH)"
    )
    keep_alive: int | str | None = Field(
        None,
        description="How long a model stays loaded: Go duration ('10m', '-1m' forever) or "
        "seconds (OLLAMA_KEEP_ALIVE, and keep_alive of the preload request)",
    )
    max_loaded_models: int | None = Field(
        None, ge=0, description="OLLAMA_MAX_LOADED_MODELS (0: 3 per GPU)"
    )
    max_queue: int | None = Field(None, gt=0, description="OLLAMA_MAX_QUEUE (default 512)")
    flash_attention: bool | None = Field(None, description="OLLAMA_FLASH_ATTENTION")
    origins: list[str] | None = Field(None, description="Extra CORS origins (OLLAMA_ORIGINS)")
    no_cloud: bool | None = Field(
        None, description="OLLAMA_NO_CLOUD; unset: on when the profile is offline"
    )
    template: str | None = Field(None, description="Modelfile TEMPLATE (a Go template)")
    system: str | None = Field(None, description="Modelfile SYSTEM message")
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Modelfile PARAMETER lines (temperature, stop, num_gpu, ...); the "
        "context length is resources.max_model_len",
    )
    pull: Literal["missing", "always"] = Field(
        "missing", description="Pull a model that is already local again (checks for updates)?"
    )
    preload: bool = Field(True, description="Load the model once it exists (POST /api/generate)")

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, v):
        if isinstance(v, str) and not _GO_DURATION.match(v.strip()):
            raise ValueError("must be a Go duration such as '10m', '24h' or '-1m', or seconds")
        return v.strip() if isinstance(v, str) else v

    @field_validator("template", "system")
    @classmethod
    def _quotable(cls, v):
        return _check_text(v)

    @field_validator("origins")
    @classmethod
    def _origins(cls, v):
        if v is not None and any("," in o for o in v):
            raise ValueError("one origin per list item (OLLAMA_ORIGINS is comma-separated)")
        return v

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, v: dict) -> dict:
        out: dict[str, Any] = {}
        for name, value in v.items():
            if name == "num_ctx":
                raise ValueError("set the context length with resources.max_model_len")
            kind = PARAMETERS.get(name)
            if kind is None:
                raise ValueError(
                    f"unknown Modelfile parameter {name!r} (known: {', '.join(sorted(PARAMETERS))})"
                )
            out[name] = _coerce(name, kind, value)
        return out


def _coerce(name: str, kind: type, value: Any) -> Any:
    if kind is list:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(s, str) and s for s in items):
            raise ValueError(f"parameter {name!r} takes a string or a list of strings")
        for s in items:
            if "\n" in s or '"' in s:
                raise ValueError(f'parameter {name!r}: a value cannot contain a newline or "')
        return list(items)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"parameter {name!r} takes true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"parameter {name!r} takes a number")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"parameter {name!r} takes an integer")
        return int(value)
    return float(value)


# -- the model side of a plan (pure) -----------------------------------------------------


def tagged(name: str) -> str:
    """The name Ollama lists for `name`: `:latest` added when no tag, `library/` dropped."""
    head, _, last = name.rpartition("/")
    if ":" not in last:
        last += ":latest"
    if head == "library":  # the default namespace is not shown (Name.DisplayShortest)
        head = ""
    return f"{head}/{last}" if head else last


@dataclass(frozen=True)
class ModelSpec:
    """What after_ready must do so that `served` exists, and how render shows it."""

    served: str  # the exact name requests carry and /v1/models lists
    pull_name: str | None = None  # pull this registry name first
    create: bool = False  # create `served` (from `from_name` or the GGUF `local`)
    from_name: str | None = None
    local: str | None = None  # absolute GGUF file, or a directory holding *.gguf
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    quantize: str | None = None


def model_spec(profile: Profile, opts: OllamaOptions) -> ModelSpec:
    m, r = profile.model, profile.resources
    params: dict[str, Any] = {}
    if r.max_model_len:
        params["num_ctx"] = r.max_model_len
    if r.device == "cpu":
        params["num_gpu"] = 0  # offload no layers to a GPU
    params.update(opts.parameters)
    common = dict(
        parameters=params, template=opts.template, system=opts.system, quantize=m.quantization
    )
    local = profile.model_path()
    if local is not None:
        return ModelSpec(
            served=tagged(profile.served_name), create=True, local=str(local), **common
        )
    pulled = tagged(m.source)
    derive = bool(params or opts.template or opts.system or m.quantization) or (
        m.served_name is not None and tagged(m.served_name) != pulled
    )
    if not derive:
        return ModelSpec(served=pulled, pull_name=m.source)
    return ModelSpec(
        served=tagged(profile.served_name),
        pull_name=m.source,
        create=True,
        from_name=m.source,
        **common,
    )


def _quote(value: str) -> str:
    """Ollama's parser.quote: quote a value with a newline or outer spaces."""
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


def _param_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return _quote(str(v))


def modelfile_text(spec: ModelSpec, profile: Profile) -> str:
    lines = [
        f"# Modelfile written by llmctl for profile '{profile.name}'.",
        f"# Build by hand: ollama create {spec.served} -f <this file>",
        f"FROM {spec.local or spec.from_name}",
    ]
    for name, value in spec.parameters.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {name} {_param_value(v)}")
    if spec.template is not None:
        lines.append(f'TEMPLATE """{spec.template}"""')
    if spec.system is not None:
        lines.append(f'SYSTEM """{spec.system}"""')
    return "\n".join(lines) + "\n"


# -- the backend -------------------------------------------------------------------------


class OllamaBackend(Backend):
    name = "ollama"
    summary = "Ollama (ollama serve + pull/create; GGUF models, CPU or GPU)"
    default_port = 11434
    executable = "ollama"
    distribution = None  # a Go binary: no dist-info to read
    newest_known = "0.32.15"
    Options = OllamaOptions
    supports = frozenset(
        {
            "model.served_name",
            "model.quantization",
            "resources.device",
            "resources.max_model_len",
            "resources.max_num_seqs",
            "resources.kv_cache_dtype",
        }
    )
    install_hint = (
        "install Ollama from its download page (one binary, `ollama` on PATH), or point "
        "runtime.executable at it; if Ollama already runs as a service, set server.managed: false"
    )
    # The load phase covers pull + create + preload (a download can be long).
    timeouts = (120.0, 1800.0, 300.0)

    # -- static side ----------------------------------------------------------------------
    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = super().check(profile, version)
        for issue in issues:
            issue.hint = HINTS.get(issue.key, issue.hint)
        issues += self._check_keys(profile)
        try:
            opts = self.options(profile)
        except LlmctlError:
            return issues  # resolve() already reports the option errors
        issues += self._check_model(profile, opts)
        return issues

    def _check_keys(self, profile: Profile) -> list[ProfileIssue]:
        issues: list[ProfileIssue] = []
        bad = lambda loc, msg, hint=None: issues.append(profile.issue(loc, msg, hint))  # noqa: E731
        name = self.name
        if profile.extra_args:
            bad(
                ("extra_args",),
                f"backend '{name}': `ollama serve` takes no arguments",
                "configure the server with OLLAMA_* variables in env (or the typed options)",
            )
        r, m, hub = profile.resources, profile.model, profile.hub
        if r.kv_cache_dtype is not None and r.kv_cache_dtype not in KV_CACHE_TYPES:
            bad(
                ("resources", "kv_cache_dtype"),
                f"backend '{name}' takes OLLAMA_KV_CACHE_TYPE {', '.join(KV_CACHE_TYPES)} "
                f"(got {r.kv_cache_dtype!r})",
            )
        if m.quantization is not None and m.quantization not in QUANTIZE_TYPES:
            bad(
                ("model", "quantization"),
                f"backend '{name}' quantizes with `ollama create --quantize` "
                f"{', '.join(QUANTIZE_TYPES)} (got {m.quantization!r})",
                "the source must be an F16/F32 model; already-quantized GGUFs need no key",
            )
        if m.task == "rerank":
            bad(("model", "task"), f"backend '{name}' serves chat and embedding, not rerank")
        set_keys = profile.set_keys()
        for key, hint in (
            ("hub.endpoint", "Ollama pulls from its own registry; there is no mirror setting"),
            ("hub.token_env", "Ollama does not read hub tokens"),
        ):
            if key in set_keys:
                bad(tuple(key.split(".")), f"backend '{name}' cannot honour this key", hint)
        if hub.source != "huggingface":
            bad(("hub", "source"), f"backend '{name}' pulls Ollama model names only")
        opts = profile.options or {}
        if hub.cache_dir and opts.get("models_dir"):
            bad(
                ("options", "models_dir"),
                f"backend '{name}': set the model store once: hub.cache_dir or options.models_dir",
            )
        if not profile.server.managed:
            if profile.server.port == "auto":
                bad(
                    ("server", "port"),
                    f"backend '{name}': port: auto cannot find a server someone else runs "
                    "(server.managed: false)",
                    "give the port the running Ollama listens on (default 11434)",
                )
            present = {k for k in SERVER_ONLY_KEYS if k in set_keys} | {
                f"options.{k}" for k in opts if f"options.{k}" in SERVER_ONLY_KEYS
            }
            if profile.env:
                present.add("env")
            for key in sorted(present):
                bad(
                    tuple(key.split(".")),
                    f"backend '{name}': only configures a server llmctl starts, and "
                    "server.managed is false",
                    f"set {SERVER_ONLY_KEYS[key]} in the running server's own environment "
                    "(systemctl edit ollama.service), or remove it",
                )
        return issues

    def _check_model(self, profile: Profile, opts: OllamaOptions) -> list[ProfileIssue]:
        issues: list[ProfileIssue] = []
        spec = model_spec(profile, opts)
        if profile.model_path() is None and not _NAME.match(profile.model.source):
            issues.append(
                profile.issue(
                    ("model", "source"),
                    f"backend '{self.name}': neither a local GGUF path nor an Ollama model "
                    "name (name:tag)",
                    "local paths start with / . or ~; names look like qwen2.5:0.5b",
                )
            )
        if spec.create and not _NAME.match(spec.served):
            issues.append(
                profile.issue(
                    ("model", "served_name") if profile.model.served_name else ("name",),
                    f"backend '{self.name}': not a valid Ollama model name: {spec.served!r}",
                    "letters, digits, _ . - ; an optional :tag",
                )
            )
        if spec.from_name and tagged(spec.from_name) == spec.served:
            issues.append(
                profile.issue(
                    ("model", "served_name"),
                    f"backend '{self.name}' derives a model from {spec.from_name!r} (Modelfile) "
                    "and must give it another name",
                    "choose a served_name different from the pulled name",
                )
            )
        if profile.resources.device == "cpu" and "num_gpu" in opts.parameters:
            issues.append(
                profile.issue(
                    ("options", "parameters", "num_gpu"),
                    f"backend '{self.name}': resources.device: cpu already sets num_gpu 0",
                )
            )
        return issues

    def _hostport(self, profile: Profile, ctx: RenderContext, *, client: bool) -> str:
        from llmdeploy_cli.backend import _client_host

        host = profile.server.host
        if client:
            host = _client_host(host)
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port(profile, ctx)}"

    def endpoint(self, profile: Profile, ctx: RenderContext) -> Endpoint:
        root = f"http://{self._hostport(profile, ctx, client=True)}"
        spec = model_spec(profile, self.options(profile))
        return Endpoint(
            base_url=f"{root}/v1",
            model=spec.served,
            health_url=f"{root}/",
            api_key_env=None,
            task=profile.model.task,
        )

    def server_env(self, profile: Profile, ctx: RenderContext, opts: OllamaOptions) -> dict:
        r = profile.resources
        env: dict[str, str] = {"OLLAMA_HOST": self._hostport(profile, ctx, client=False)}
        models = opts.models_dir or profile.hub.cache_dir
        if models:
            env["OLLAMA_MODELS"] = _expand_home(models, ctx.environ)
        if opts.context_length:
            env["OLLAMA_CONTEXT_LENGTH"] = str(opts.context_length)
        if opts.keep_alive is not None:
            env["OLLAMA_KEEP_ALIVE"] = str(opts.keep_alive)
        if r.max_num_seqs:
            env["OLLAMA_NUM_PARALLEL"] = str(r.max_num_seqs)
        if opts.max_loaded_models is not None:
            env["OLLAMA_MAX_LOADED_MODELS"] = str(opts.max_loaded_models)
        if opts.max_queue is not None:
            env["OLLAMA_MAX_QUEUE"] = str(opts.max_queue)
        if opts.flash_attention is not None:
            env["OLLAMA_FLASH_ATTENTION"] = "1" if opts.flash_attention else "0"
        if r.kv_cache_dtype:
            env["OLLAMA_KV_CACHE_TYPE"] = r.kv_cache_dtype
        if opts.origins:
            env["OLLAMA_ORIGINS"] = ",".join(opts.origins)
        no_cloud = profile.offline if opts.no_cloud is None else opts.no_cloud
        if no_cloud:
            env["OLLAMA_NO_CLOUD"] = "1"
        if profile.offline:
            # Ollama reads none of these; set anyway so every engine keeps the offline
            # contract (preflight checks it), and so nothing it starts reaches a hub.
            env.update(OFFLINE_ENV)
        devices = r.visible_devices
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = (
                devices if isinstance(devices, str) else ",".join(str(d) for d in devices)
            )
        for k, v in profile.env.items():
            env[k] = Secret(v) if looks_secret(k) and v else v
        return env

    def modelfile_path(self, profile: Profile, ctx: RenderContext) -> str:
        state = os.path.expanduser(ctx.state_dir)
        return os.path.join(state, "ollama", profile.name, "Modelfile")

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: OllamaOptions = self.options(profile)
        spec = model_spec(profile, opts)
        exe = executable_for_argv(self, profile)
        endpoint = self.endpoint(profile, ctx)
        root = endpoint.base_url.removesuffix("/v1")
        warnings: list[str] = []

        server = Step("server", Command([exe, "serve"], self.server_env(profile, ctx, opts)))
        if not profile.server.managed:
            server = Step(
                "server",
                Command([exe, "serve"], {"OLLAMA_HOST": server.command.env["OLLAMA_HOST"]}),
                via="Ollama already running there (server.managed: false): llmctl does not "
                "start it",
            )
            warnings.append(
                f"server.managed is false: llmctl does not start `ollama serve`; it expects "
                f"Ollama at {root} (e.g. the system service) and only pulls/creates and "
                "preloads the model there"
            )
        steps = [server]
        client_env = {"OLLAMA_HOST": self._hostport(profile, ctx, client=True)}
        files: list[GeneratedFile] = []
        if spec.pull_name:
            steps.append(
                Step(
                    "pull",
                    Command([exe, "pull", spec.pull_name], dict(client_env)),
                    kind="action",
                    via=VIA,
                )
            )
            if profile.offline:
                warnings.append(
                    f"offline: llmctl never pulls; serve fails unless {tagged(spec.pull_name)} "
                    "is already in Ollama's model store"
                )
        if spec.create:
            path = self.modelfile_path(profile, ctx)
            files.append(GeneratedFile(path, modelfile_text(spec, profile)))
            argv = [exe, "create", spec.served, "-f", path]
            if spec.quantize:
                argv += ["--quantize", spec.quantize]
            steps.append(Step("create", Command(argv, dict(client_env)), kind="action", via=VIA))
        if opts.preload and profile.model.task == "chat":
            argv = [exe, "run"]
            if opts.keep_alive is not None:
                argv.append(f"--keepalive={_keepalive_flag(opts.keep_alive)}")
            argv += [spec.served, ""]
            steps.append(Step("preload", Command(argv, dict(client_env)), kind="action", via=VIA))
        if profile.resources.kv_cache_dtype in ("q8_0", "q4_0") and opts.flash_attention is False:
            warnings.append(
                "OLLAMA_KV_CACHE_TYPE only quantizes the cache with flash attention on, "
                "and options.flash_attention is false"
            )
        return Plan(
            steps=steps,
            endpoint=endpoint,
            files=files,
            engine_version=ctx.engine_version,
            version_source=ctx.version_source,
            warnings=warnings,
        )

    # -- runtime side ---------------------------------------------------------------------
    def probe(self, client: httpx.Client, endpoint: Endpoint) -> Probe:
        import httpx

        try:
            r = client.get(endpoint.health_url or endpoint.base_url.removesuffix("/v1") + "/")
        except httpx.TransportError as e:
            return Probe(Readiness.DOWN, type(e).__name__)
        if r.status_code == 200 and "Ollama is running" in r.text:
            return Probe(Readiness.READY, "Ollama is running")
        if r.status_code == 200:
            return Probe(
                Readiness.LOADING, f"GET / answered, but not as Ollama does: {r.text[:80]!r}"
            )
        return Probe(Readiness.LOADING, f"GET / answered {r.status_code}")

    def model_listed(self, client: httpx.Client, endpoint: Endpoint) -> Probe:
        p = super().model_listed(client, endpoint)
        if p.state is Readiness.LOADING and "not listed" in p.why:
            return Probe(p.state, p.why + "; Ollama lists name:tag (name:latest without a tag)")
        return p

    def after_ready(self, client: httpx.Client, plan: Plan, profile: Profile, report) -> None:
        """Pull and/or create the model through the ollama library, then preload it."""
        import httpx
        import ollama

        opts: OllamaOptions = self.options(profile)
        spec = model_spec(profile, opts)
        root = plan.endpoint.base_url.removesuffix("/v1")
        load_s = profile.health.load_timeout or self.timeouts[1]
        # trust_env=False: a proxy from the environment must not sit between us and Ollama.
        oc = ollama.Client(host=root, timeout=httpx.Timeout(load_s, connect=10.0), trust_env=False)
        step, name = "pull", spec.pull_name or spec.served
        try:
            if spec.pull_name:
                self._pull(oc, spec.pull_name, profile, opts, report)
            if spec.create:
                step, name = "create", spec.served
                self._create(oc, client, root, spec, plan, report)
            if opts.preload and profile.model.task == "chat":
                step, name = "preload", spec.served
                report(f"preload: loading {spec.served}", None)
                kw = {} if opts.keep_alive is None else {"keep_alive": opts.keep_alive}
                oc.generate(model=spec.served, **kw)
                report(f"preload: {spec.served} loaded", 1.0)
        except ollama.ResponseError as e:
            raise _explain(step, name, e) from None
        except (ConnectionError, httpx.ConnectError):  # the library raises both
            raise UnreachableError(
                f"{step}: cannot connect to Ollama at {root}",
                hint="is it running? (server.managed: false expects it already up)",
            ) from None
        except httpx.TimeoutException:
            raise LlmctlError(
                f"{step} {name}: Ollama did not answer within {load_s:.0f} s",
                hint="raise health.load_timeout for big models or slow links",
            ) from None
        except httpx.HTTPError as e:
            raise LlmctlError(f"{step} {name}: {type(e).__name__}: {e}") from None
        finally:
            oc.close()

    def _pull(self, oc, name: str, profile: Profile, opts: OllamaOptions, report) -> None:
        want = tagged(name)
        have = {tagged(m.model or "") for m in oc.list().models}
        if want in have and opts.pull == "missing":
            report(f"pull: {want} is already local", 1.0)
            return
        if profile.offline:
            raise PreflightError(
                f"offline: model {want} is not in Ollama's model store, and an offline "
                "profile never pulls",
                hint=f"run `ollama pull {name}` where there is network and copy the model "
                "store (OLLAMA_MODELS), or set offline: false",
            )
        report(f"pull: {name}", 0.0)
        progress = _Progress(report, "pull")
        for part in oc.pull(name, stream=True):
            progress.update(part.status or "", part.digest, part.total, part.completed)
        report(f"pull: {want} ready", 1.0)

    def _create(self, oc, client, root: str, spec: ModelSpec, plan: Plan, report) -> None:
        import inspect

        from llmdeploy_cli.fsutil import atomic_write

        for f in plan.files:  # so the by-hand `ollama create -f` shown by render works
            try:
                if not os.path.exists(f.path) or Path(f.path).read_text() != f.content:
                    atomic_write(f.path, f.content)
            except OSError:
                pass  # the library call below does not need the file
        if "from_" not in inspect.signature(oc.create).parameters:
            import ollama

            raise LlmctlError(
                f"the installed ollama library ({getattr(ollama, '__version__', '?')}) is too "
                "old to create models (it needs create(from_=..., files=...))",
                hint="upgrade it: pip install 'ollama>=0.4.6'",
            )
        kw: dict[str, Any] = {}
        if spec.local:
            kw["files"] = {
                os.path.basename(p): _upload_blob(client, root, p, report)
                for p in _gguf_files(spec.local)
            }
        else:
            kw["from_"] = spec.from_name
        if spec.parameters:
            kw["parameters"] = spec.parameters
        if spec.template is not None:
            kw["template"] = spec.template
        if spec.system is not None:
            kw["system"] = spec.system
        if spec.quantize:
            kw["quantize"] = spec.quantize
        report(f"create: {spec.served}", 0.0)
        progress = _Progress(report, "create")
        for part in oc.create(model=spec.served, stream=True, **kw):
            progress.update(part.status or "", part.digest, part.total, part.completed)
        report(f"create: {spec.served} ready", 1.0)


def _expand_home(path: str, environ) -> str:
    """~ expanded from the render environment (so a golden render is the same everywhere)."""
    home = environ.get("HOME") if environ else None
    if home and (path == "~" or path.startswith("~/")):
        return home + path[1:]
    return os.path.expanduser(path)


def _keepalive_flag(v: int | str) -> str:
    return f"{v}s" if isinstance(v, int) else v


class _Progress:
    """Turns Ollama's NDJSON progress (per-layer completed/total) into report() calls."""

    def __init__(self, report, step: str, every_s: float = 0.5):
        self.report, self.step, self.every_s = report, step, every_s
        self.layers: dict[str, tuple[int, int]] = {}
        self.status = ""
        self.last = 0.0
        self.best = 0.0

    def update(self, status: str, digest: str | None, total: int | None, done: int | None):
        if digest and total:
            self.layers[digest] = (done or 0, total)
        now = time.monotonic()
        changed = status != self.status and not (digest and status.startswith("pulling"))
        if not changed and now - self.last < self.every_s:
            return
        self.status, self.last = status, now
        frac = None
        if self.layers:
            # Layers appear one after another, so the total grows: never report going back,
            # and keep 1.0 for the end (the caller reports it once the step succeeded).
            got = sum(d for d, _ in self.layers.values())
            want = sum(t for _, t in self.layers.values())
            self.best = max(self.best, min(got / want, 0.99) if want else 0.0)
            frac = self.best
        self.report(f"{self.step}: {status}", frac)


def _gguf_files(local: str) -> list[str]:
    p = Path(local)
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        found = sorted(str(f) for f in p.glob("*.gguf"))
        if found:
            return found
        raise PreflightError(
            f"{local} holds no .gguf file",
            hint="point model.source at a GGUF file, or a directory that holds one",
        )
    raise PreflightError(f"model file not found: {local}", hint="check model.source")


def _upload_blob(client: httpx.Client, root: str, path: str, report) -> str:
    """Hash a file, and upload it as a blob unless Ollama has it (what `ollama create` does)."""
    import hashlib

    import httpx

    size = os.path.getsize(path) or 1
    name = os.path.basename(path)
    h = hashlib.sha256()
    done, last = 0, 0.0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            done += len(chunk)
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                report(f"create: hashing {name}", done / size)
    digest = f"sha256:{h.hexdigest()}"
    url = f"{root}/api/blobs/{digest}"
    if client.head(url).status_code == 200:
        report(f"create: {name} is already a blob", None)
        return digest

    def body():
        sent, last = 0, 0.0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sent += len(chunk)
                if time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    report(f"create: copying {name}", sent / size)
                yield chunk

    r = client.post(
        url,
        content=body(),
        headers={"Content-Length": str(os.path.getsize(path))},  # not chunked, as ollama does
        timeout=httpx.Timeout(None, connect=10.0),
    )
    if r.status_code not in (200, 201):
        raise LlmctlError(
            f"create: Ollama refused the upload of {name} ({r.status_code}): {_error_text(r)}"
        )
    return digest


def _error_text(r) -> str:
    try:
        return str(r.json().get("error", r.text))
    except (ValueError, AttributeError):
        return r.text[:200]


_NETWORK = ("dial tcp", "no such host", "i/o timeout", "network is unreachable", "tls", "eof")


def _explain(step: str, name: str, e) -> LlmctlError:
    """A clear error (with a hint) for an ollama.ResponseError."""
    msg = str(getattr(e, "error", e))
    low = msg.lower()
    code = getattr(e, "status_code", -1)
    if step == "pull" and "file does not exist" in low:
        return LlmctlError(
            f"pull {name}: the registry has no model by that name ({msg})",
            hint="check the name and tag (name:tag); `ollama list` shows local models",
        )
    if step == "pull" and (code in (401, 403) or "unauthorized" in low or "denied" in low):
        return LlmctlError(
            f"pull {name}: the registry denied access ({msg})",
            hint="the model may be private or the name mistyped",
        )
    if step == "pull" and any(s in low for s in _NETWORK):
        return LlmctlError(
            f"pull {name}: Ollama could not reach the model registry ({msg})",
            hint="check the Ollama server's network and HTTPS_PROXY; on an offline machine, "
            "copy a model store (OLLAMA_MODELS) and set offline: true",
        )
    if code == 404 or "not found" in low:
        return LlmctlError(
            f"{step} {name}: Ollama has no such model ({msg})",
            hint="`ollama list` shows the models it has; names carry a tag (name:latest)",
        )
    status = f" (HTTP {code})" if code and code > 0 else ""
    return LlmctlError(f"{step} {name}: Ollama answered an error{status}: {msg}")


__all__ = ["OllamaBackend", "OllamaOptions", "ModelSpec", "model_spec", "modelfile_text", "tagged"]
