"""The Ollama backend: checks, the rendered plan and readiness (facts: see __init__).

The model actions after the server is up (pull, create, preload) live in actions.py.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from llmctl_backends.ollama.model import (
    _NAME,
    HINTS,
    KV_CACHE_TYPES,
    QUANTIZE_TYPES,
    SERVER_ONLY_KEYS,
    VIA,
    OllamaOptions,
    _expand_home,
    _keepalive_flag,
    model_spec,
    modelfile_text,
    tagged,
)

from llmdeploy_cli.backend import (
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
    profile_relative,
)
from llmdeploy_cli.capabilities import (
    HF_OFFLINE,
    NOT_SUPPORTED,
    Archive,
    ContainerSpec,
    HubVars,
    ModelFormat,
    Recipe,
    Remedies,
    Remedy,
    Task,
)
from llmdeploy_cli.command import looks_secret
from llmdeploy_cli.engine_env import executable_for_argv
from llmdeploy_cli.errors import LlmctlError, ProfileIssue
from llmdeploy_cli.memory_rules import BaseMemory, MiB, NoPool, Sizing
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    import httpx


class OllamaBackend(Backend):
    name = "ollama"
    summary = "Ollama (ollama serve + pull/create; GGUF models, CPU or GPU)"
    default_port = 11434
    executable = "ollama"
    distribution = None  # a Go binary: no dist-info to read
    newest_known = "0.32.15"
    # Ollama's names (Modelfile parameters, server variables) for what common keys set.
    option_keys = {
        "num_ctx": "resources.max_model_len",
        "num_parallel": "resources.max_num_seqs",
        "kv_cache_type": "resources.kv_cache_dtype",
        "quantize": "model.quantization",
    }
    Options = OllamaOptions
    memory = NoPool(
        BaseMemory(
            40 * MiB,
            "estimate: llama.cpp's server measured here (xllamacpp); Ollama's own server "
            "process comes on top and is not measured",
        ),
        Sizing.LAYERS,
    )
    # num_ctx, OLLAMA_NUM_PARALLEL and OLLAMA_KV_CACHE_TYPE (KV_CACHE_TYPES).
    remedies = Remedies(
        shorter_context=Remedy("resources.max_model_len"),
        kv_cache_dtype=Remedy(
            "resources.kv_cache_dtype", "q8_0", "halves the KV bytes per token (f16 -> q8_0)"
        ),
        fewer_seqs=Remedy("resources.max_num_seqs"),
    )
    refused_hints = HINTS
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

    # -- declared capabilities (llmdeploy_cli/capabilities.py) ----------------------------
    model_formats = frozenset({ModelFormat.GGUF, ModelFormat.REGISTRY_NAME})
    # docs/openai.mdx: /v1/chat/completions, /v1/completions, /v1/embeddings; no rerank
    tasks = frozenset({Task.CHAT, Task.COMPLETIONS, Task.EMBEDDINGS})
    runs_on_cpu = True
    container = ContainerSpec("ollama/ollama:{version}", "/root/.ollama", "OLLAMA_MODELS")
    # `llmctl engine install ollama`: the official Linux release archive (bin/ollama and its
    # lib/ollama runners, CPU and CUDA in one), checked against the release's sha256sum.txt.
    # LLMCTL_OLLAMA_RELEASES replaces the host (a mirror, or a file:// folder laid out as
    # the release: vVERSION/ollama-linux-ARCH.tar.zst and vVERSION/sha256sum.txt).
    install = Recipe(
        default_version="0.32.15",
        devices=("cpu", "cuda"),
        packages=(),
        archive=Archive(
            base="https://github.com/ollama/ollama/releases/download",
            base_env="LLMCTL_OLLAMA_RELEASES",
            path="v{version}/ollama-linux-{arch}.tar.zst",
            sha256_path="v{version}/sha256sum.txt",
            arches={"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"},
        ),
    )
    # The version is read from the binary (`ollama -v`): its own version is the client's.
    # OLLAMA_HOST points it at a closed local port, so it never waits on (or reports) a
    # server somewhere else: it prints "client version is X" at once.
    version_argv = ("-v",)
    version_env = {"OLLAMA_HOST": "127.0.0.1:9"}
    # Ollama reads none of HF_OFFLINE; server_env sets them anyway (the offline contract).
    # The model store: OLLAMA_MODELS, else ~/.ollama/models for `ollama serve` as the user;
    # the Linux service (install.sh: user ollama, home /usr/share/ollama) keeps its own.
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope=NOT_SUPPORTED,
        cache_env="OLLAMA_MODELS",
        store_default="~/.ollama/models",
        service_store="/usr/share/ollama/.ollama/models",
    )
    flag_source = NOT_SUPPORTED  # `ollama serve` takes no flags: it reads OLLAMA_* variables

    @staticmethod
    def version_from_output(text: str) -> str | None:
        """`ollama -v` prints "ollama version is X" when it reaches a server of its own
        version, "Warning: client version is X" otherwise (no server, or another version
        answering): the client's is the binary's."""
        import re

        m = re.search(r"client version is v?(\d+\.\d+\.\d+\S*)", text) or re.search(
            r"ollama version is v?(\d+\.\d+\.\d+\S*)", text
        )
        return m.group(1) if m else None

    # -- static side ----------------------------------------------------------------------
    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = super().check(profile, version)
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
        local = profile.model_path()
        not_gguf = _not_gguf(local) if local is not None else None
        if not_gguf:
            issues.append(
                profile.issue(
                    ("model", "source"),
                    f"backend '{self.name}' loads GGUF files; {local} is {not_gguf}",
                    "point model.source at a .gguf file (or a folder holding one; convert a "
                    "Hugging Face folder with llama.cpp's convert_hf_to_gguf.py), or serve "
                    "this folder with a backend that loads it (transformers, vllm)",
                )
            )
        if local is None and not _NAME.match(profile.model.source):
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

    def sampling_params(self, profile: Profile) -> dict:
        """The sampling PARAMETERs of the Modelfile llmctl writes (options.parameters)."""
        try:
            params = self.options(profile).parameters
        except LlmctlError:
            return {}
        return {k: v for k, v in params.items() if k in SAMPLING_PARAMETERS}

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
            models = _expand_home(models, ctx.environ)
            env["OLLAMA_MODELS"] = profile_relative(profile, models)  # ./x: the profile's folder
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
            env.update(self.hub.offline)
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

        from llmdeploy_cli.openai_http.failures import classify

        try:
            r = client.get(endpoint.health_url or endpoint.base_url.removesuffix("/v1") + "/")
        except httpx.TransportError as e:
            return Probe(Readiness.DOWN, classify(e).kind)
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
        from llmctl_backends.ollama.actions import prepare_model

        opts: OllamaOptions = self.options(profile)
        spec = model_spec(profile, opts)
        prepare_model(client, plan, profile, opts, spec, self.timeouts[1], report)


# Files that are a model, but not one `ollama create` takes from llmctl (it uploads *.gguf).
_NOT_GGUF_SUFFIXES = {
    ".safetensors": "a safetensors file",
    ".bin": "a PyTorch .bin file",
    ".pt": "a PyTorch checkpoint",
    ".pth": "a PyTorch checkpoint",
    ".ckpt": "a checkpoint",
    ".onnx": "an ONNX file",
    ".json": "a JSON file",
    ".h5": "a Keras/HDF5 file",
    ".msgpack": "a Flax file",
    ".npz": "a NumPy archive",
}


def _not_gguf(path) -> str | None:
    """Why a local model.source is not a GGUF model, from its name (and, for a folder that is
    on this machine, the names in it: no file is read); None when it may be one."""
    what = _NOT_GGUF_SUFFIXES.get(path.suffix.lower())
    if what:
        return what
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
        if not any(n.lower().endswith(".gguf") for n in names) and (
            "config.json" in names or any(n.endswith(".safetensors") for n in names)
        ):
            return "a Hugging Face model folder (config.json / *.safetensors, no .gguf)"
    return None


# Modelfile PARAMETERs that shape sampling (api/types.go Options).
SAMPLING_PARAMETERS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)
