"""The Xinference backend: checks, the rendered plan and the launch fields (facts: see
__init__). The launch itself, through Xinference's REST API once the server is up, is
launch.py.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from llmctl_backends.xinference import families
from llmctl_backends.xinference.options import (
    MISSING_NAME,
    MODEL_TYPES,
    REFUSED_HINTS,
    XinferenceOptions,
)
from pydantic import BaseModel

from llmdeploy_cli.backend import (
    Backend,
    Command,
    Endpoint,
    Plan,
    RenderContext,
    Step,
    flag,
)
from llmdeploy_cli.capabilities import (
    HF_CACHE,
    HF_OFFLINE,
    MODELSCOPE_CACHE,
    ContainerSpec,
    FlagCommand,
    FlagSource,
    HubCache,
    HubVars,
    ModelFormat,
    Recipe,
    Remedies,
    Remedy,
    Task,
)
from llmdeploy_cli.engine_env import executable_for_argv, version_tuple
from llmdeploy_cli.errors import ProfileError, ProfileIssue, name_backend
from llmdeploy_cli.memory_rules import PYTORCH_BASE, BaseMemory, NoPool
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    import httpx


class XinferenceBackend(Backend):
    name = "xinference"
    summary = "Xinference local cluster + one launched model (many engines behind one API)"
    default_port = 9997
    executable = "xinference-local"
    distribution = "xinference"
    newest_known = "4.1.0"
    # xinference launch's names for what common keys set.
    option_keys = {
        "context_length": "resources.max_model_len",
        "quantization": "model.quantization",
    }
    Options = XinferenceOptions
    memory = NoPool(
        BaseMemory(
            PYTORCH_BASE,
            "estimate: at least python + torch + transformers imported (measured here); the "
            "supervisor, the worker and the launched engine (options.model_engine) add more",
        )
    )
    # resources.max_model_len and tensor_parallel go to the model launch (launch.py).
    remedies = Remedies(
        more_gpus=Remedy("resources.tensor_parallel"),
        shorter_context=Remedy("resources.max_model_len"),
    )
    refused_hints = REFUSED_HINTS
    supports = frozenset(
        {
            "model.served_name",
            "model.quantization",
            "model.trust_remote_code",
            "server.api_key_env",
            "resources.device",
            "resources.max_model_len",
            "resources.tensor_parallel",
        }
    )
    install_hint = (
        "python -m venv ~/.venvs/xinference && ~/.venvs/xinference/bin/pip install "
        "'xinference[transformers]'"
    )
    # start: the supervisor comes up in seconds; load: the launch downloads and loads.
    timeouts = (120.0, 1800.0, 300.0)

    # -- declared capabilities (llmdeploy_cli/capabilities.py) ----------------------------
    model_formats = frozenset({ModelFormat.HF_FOLDER, ModelFormat.REGISTRY_NAME})
    # `llmctl init`: options.model_name from a local folder's architecture (families.py)
    starter_options = staticmethod(families.starter_options)
    # xinference/api/restful_api.py has chat, completions, embeddings and rerank routes, but
    # a chat model launched with the transformers engine answers /v1/completions with 500
    # ("'str' object has no attribute 'get'", 4.1.0, seen by smoke's legacy-route call in
    # tests/engines/test_xinference_e2e.py): completions is not declared.
    tasks = frozenset({Task.CHAT, Task.EMBEDDINGS, Task.RERANK})
    runs_on_cpu = True  # --n-gpu none (resources.device: cpu)
    container = ContainerSpec(
        "xprobe/xinference:v{version}", "/root/.xinference", "XINFERENCE_HOME"
    )
    install = Recipe(
        default_version="4.1.0",
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
        torch={"cpu": "2.13.0", "cuda": None},  # the CPU torch of the project's .venv
        notes=(
            "xinference depends on timm, which pulls torchvision: the index's build is "
            "for CUDA torch and does not load with a CPU torch; llmctl removes it on CPU",
            "4.x creates a virtualenv per launched model by default "
            "(XINFERENCE_ENABLE_VIRTUAL_ENV): set it to 0 to use this env as it is",
        ),
    )
    # Unset, Xinference guesses the hub from the locale (XINFERENCE_MODEL_SRC), so
    # base_env always sets it; the HF and ModelScope caches live under XINFERENCE_HOME.
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope={},
        source_env="XINFERENCE_MODEL_SRC",
        cache_env="XINFERENCE_HOME",
        endpoint_env="HF_ENDPOINT",
        # xinference/constants.py get_xinference_home: a set XINFERENCE_HOME moves the
        # caches to $XINFERENCE_HOME/huggingface (HUGGINGFACE_HUB_CACHE) and /modelscope
        # (MODELSCOPE_CACHE); unset, the hubs' own defaults stay and the home is ~/.xinference.
        caches={
            "huggingface": HubCache(
                (("XINFERENCE_HOME", "huggingface"), *HF_CACHE.env), HF_CACHE.default
            ),
            "modelscope": HubCache(
                (("XINFERENCE_HOME", "modelscope"), *MODELSCOPE_CACHE.env), MODELSCOPE_CACHE.default
            ),
        },
        store_default="~/.xinference",
    )
    # xinference/deploy/cmdline.py: `local` and `model_launch` (click commands).
    flag_source = FlagSource(
        "xinference",
        commands=(
            FlagCommand("xinference-local", "click", "xinference.deploy.cmdline:local"),
            FlagCommand(
                "xinference launch",
                "click",
                "xinference.deploy.cmdline:model_launch",
                # `launch` forwards unknown `--key value` pairs to the model as kwargs.
                passes_unknown=True,
                note="the options listed are checked exactly; any other --key value pair "
                "is forwarded to the model as a keyword argument (allow_extra_args), so it "
                "cannot be checked here and is reported as a warning",
            ),
        ),
    )

    # -- static ---------------------------------------------------------------------------
    def options(self, profile: Profile) -> BaseModel:
        try:
            return super().options(profile)
        except ProfileError as e:
            name_backend(self.name, e.issues)
            raise

    def auth_on(self, profile: Profile, opts: XinferenceOptions) -> bool:
        return opts.auth if opts.auth is not None else bool(profile.server.api_key_env)

    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = super().check(profile, version)
        try:
            opts = self.Options.model_validate(profile.options)
        except Exception:  # reported by options()
            return issues
        m, r, s = profile.model, profile.resources, profile.server
        local = profile.model_path()
        if local is None and opts.model_name and opts.model_name != m.source:
            issues.append(
                profile.issue(
                    ("model", "source"),
                    "Xinference launches by registry name or local directory; this is "
                    f"neither a directory nor options.model_name ({opts.model_name!r})",
                    hint="set model.source to the model directory, or to the registry name",
                )
            )
        elif local is None and "/" in m.source:
            issues.append(
                profile.issue(
                    ("model", "source"),
                    "Xinference does not take hub ids: it downloads a registry model by name, "
                    "size, format and quantization",
                    hint="set model.source to the registry name (e.g. qwen2.5-instruct) or "
                    "to a local directory",
                )
            )
        auth = self.auth_on(profile, opts)
        home_known = (
            opts.home
            or "XINFERENCE_HOME" in profile.env
            or "XINFERENCE_AUTH_DB_PATH" in profile.env
        )
        half_login = bool(opts.login_user_env) != bool(opts.login_password_env)
        auth_rules = [  # (refused when, key under options, what is wrong, the fix)
            (
                auth and not s.api_key_env,
                "auth",
                "with Xinference's auth on, llmctl needs an API key to launch the model",
                "set server.api_key_env to a variable holding a key created in Xinference, "
                "or options.auth: false",
            ),
            (
                half_login,
                "login_password_env" if opts.login_user_env else "login_user_env",
                "a login needs both options.login_user_env and options.login_password_env",
                "name the variables that hold the user name and the password",
            ),
            (
                not auth and bool(opts.login_user_env),
                "login_user_env",
                "options.auth is false (XINFERENCE_AUTH_ADVANCED=0): there is no user to log in as",
                "remove the login options, or keep auth on",
            ),
            (
                not auth and bool(s.api_key_env),
                "auth",
                "options.auth is false (XINFERENCE_AUTH_ADVANCED=0), so the API key in "
                "server.api_key_env would never be checked",
                "remove server.api_key_env, or keep auth on",
            ),
            (
                auth and s.managed and not home_known,
                "home",
                "with auth on, the API key must exist in the auth database under "
                "XINFERENCE_HOME; the per-profile home llmctl would create has no users",
                "set options.home to the Xinference home where the key was created "
                "(e.g. ~/.xinference)",
            ),
        ]
        issues += [
            profile.issue(("options", key), message, hint=hint)
            for refused, key, message, hint in auth_rules
            if refused
        ]
        if profile.hub.cache_dir:
            issues.append(
                profile.issue(
                    ("hub", "cache_dir"),
                    "Xinference always downloads under $XINFERENCE_HOME (it overrides the hub "
                    "caches), so hub.cache_dir would be ignored",
                    hint="set options.home instead",
                )
            )
        if r.max_model_len is not None and version_tuple(version) < (4, 1):
            issues.append(
                profile.issue(
                    ("resources", "max_model_len"),
                    f"xinference {version} has no --context-length (added in 4.1)",
                    hint="pass the engine's own kwarg in options.launch_kwargs",
                )
            )
        gpus = r.tensor_parallel if "resources.tensor_parallel" in profile.set_keys() else None
        if gpus is not None and opts.n_gpu is not None and opts.n_gpu != gpus:
            issues.append(
                profile.issue(
                    ("options", "n_gpu"),
                    "resources.tensor_parallel and options.n_gpu both set --n-gpu and disagree",
                    hint="keep one of them",
                )
            )
        if r.device == "cpu" and (gpus not in (None, 1) or opts.n_gpu not in (None, "none")):
            issues.append(
                profile.issue(
                    ("resources", "device"),
                    "device cpu launches with --n-gpu none; GPU counts contradict it",
                )
            )
        return name_backend(self.name, issues)

    def model_name(self, profile: Profile, opts: XinferenceOptions) -> str | None:
        """The registry name; None for a local directory without options.model_name."""
        if opts.model_name:
            return opts.model_name
        return None if profile.model_path() is not None else profile.model.source

    def uid(self, profile: Profile, opts: XinferenceOptions) -> str:
        return opts.model_uid or profile.served_name

    def root_url(self, profile: Profile, ctx: RenderContext) -> str:
        return super().endpoint(profile, ctx).base_url.removesuffix("/v1")

    def endpoint(self, profile: Profile, ctx: RenderContext) -> Endpoint:
        opts: XinferenceOptions = self.options(profile)
        root = self.root_url(profile, ctx)
        return Endpoint(
            base_url=f"{root}/v1",
            model=self.uid(profile, opts),
            health_url=f"{root}/status",
            api_key_env=profile.server.api_key_env if self.auth_on(profile, opts) else None,
            task=profile.model.task,
        )

    def launch_fields(self, profile: Profile, opts: XinferenceOptions) -> list[tuple]:
        """(CLI option, REST field, value) for the launch: one source for argv and payload."""
        m, r = profile.model, profile.resources
        model_type = MODEL_TYPES[m.task]
        engine = opts.model_engine or ("transformers" if model_type == "LLM" else None)
        if r.device == "cpu":
            n_gpu = "none"
        elif opts.n_gpu is not None:
            n_gpu = opts.n_gpu
        elif "resources.tensor_parallel" in profile.set_keys():
            n_gpu = r.tensor_parallel
        else:
            n_gpu = None
        local = profile.model_path()
        fields = [
            ("--model-name", "model_name", self.model_name(profile, opts)),
            ("--model-type", "model_type", model_type if model_type != "LLM" else None),
            ("--model-engine", "model_engine", engine),
            ("--model-format", "model_format", opts.model_format),
            ("--size-in-billions", "model_size_in_billions", opts.model_size_in_billions),
            ("--quantization", "quantization", m.quantization),
            ("--context-length", "context_length", r.max_model_len),
            ("--model-uid", "model_uid", self.uid(profile, opts)),
            ("--replica", "replica", opts.replica),
            ("--n-gpu", "n_gpu", n_gpu),
            (
                "--gpu-idx",
                "gpu_idx",
                ",".join(str(i) for i in opts.gpu_idx) if opts.gpu_idx else None,
            ),
            ("--model-path", "model_path", str(local) if local is not None else None),
            ("--enable-thinking", "enable_thinking", True if opts.enable_thinking else None),
        ]
        return fields

    def launch_payload(self, profile: Profile) -> dict:
        """The JSON body of POST /v1/models, as `RESTfulClient.launch_model` sends it."""
        opts: XinferenceOptions = self.options(profile)
        payload: dict = {}
        for _, key, value in self.launch_fields(profile, opts):
            if value is None:
                continue
            if key == "gpu_idx":
                value = list(opts.gpu_idx or [])
            elif key == "model_size_in_billions" and value.isdigit():
                value = int(value)  # as the CLI sends it: 7 -> 7, 1_5 stays a string
            elif key == "n_gpu" and value == "none":
                value = None  # the CLI's "none": CPU only
            payload[key] = value
        payload.update(opts.launch_kwargs)
        return payload

    def launch_executable(self, profile: Profile) -> str:
        server = executable_for_argv(self, profile)
        if os.sep in server:
            return os.path.join(os.path.dirname(server), "xinference")
        return "xinference"

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: XinferenceOptions = self.options(profile)
        s = profile.server
        argv = [executable_for_argv(self, profile)]
        flag(argv, "--host", s.host)
        flag(argv, "--port", self.port(profile, ctx))
        flag(argv, "--log-level", opts.log_level)
        argv += profile.extra_args

        env = self.base_env(profile, ctx)  # with XINFERENCE_MODEL_SRC (hub.source_env)
        if opts.home:
            env["XINFERENCE_HOME"] = os.path.expanduser(opts.home)
        if not self.auth_on(profile, opts):
            env["XINFERENCE_AUTH_ADVANCED"] = "0"
        if profile.model.trust_remote_code:
            env["XINFERENCE_TRUST_REMOTE_CODE"] = "1"
        if profile.offline:
            # 4.x builds a virtualenv per launch and installs into it from the package
            # index (XINFERENCE_ENABLE_VIRTUAL_ENV defaults to 1): not on an offline machine.
            env.setdefault("XINFERENCE_ENABLE_VIRTUAL_ENV", "0")

        warnings = []
        if self.model_name(profile, opts) is None:
            # A warning, not a profile error, so `llmctl init` with a directory validates;
            # the launch refuses to run without it (after_ready).
            warnings.append(MISSING_NAME)
        launch = [self.launch_executable(profile), "launch"]
        flag(launch, "--endpoint", self.root_url(profile, ctx))
        for option, _, value in self.launch_fields(profile, opts):
            flag(launch, option, value)
        for k, v in opts.launch_kwargs.items():
            launch += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
        steps = [Step("server", Command(argv, env))]
        via = "Xinference REST API: POST /v1/models with these fields, any key in a header"
        if self.auth_on(profile, opts) and opts.login_user_env:
            # `xinference login` stores the user's access token, which `xinference launch`
            # then sends: the CLI form of what serve does before every launch.
            login = [self.launch_executable(profile), "login"]
            flag(login, "--endpoint", self.root_url(profile, ctx))
            user = ctx.environ.get(opts.login_user_env) or f"${{{opts.login_user_env}}}"
            login += ["--username", user]
            login += ["--password", ctx.secret(opts.login_password_env)]
            steps.append(
                Step(
                    "login",
                    Command(login),
                    kind="action",
                    via="Xinference REST API: POST /token with these credentials",
                )
            )
            via = "Xinference REST API: POST /v1/models with these fields, the login's token"
        elif self.auth_on(profile, opts) and s.api_key_env:
            launch += ["--api-key", ctx.secret(s.api_key_env)]
        steps.append(Step("launch", Command(launch), kind="action", via=via))
        return Plan(
            steps=steps,
            endpoint=self.endpoint(profile, ctx),
            engine_version=ctx.engine_version,
            version_source=ctx.version_source,
            warnings=warnings,
        )

    def extra_env_for_serve(self, profile: Profile, state_dir: str) -> dict[str, str]:
        """A per-profile XINFERENCE_HOME under the state dir unless the profile names one."""
        opts: XinferenceOptions = self.options(profile)
        if opts.home or "XINFERENCE_HOME" in profile.env:
            return {}
        return {"XINFERENCE_HOME": os.path.join(state_dir, "xinference", profile.name)}

    # -- runtime --------------------------------------------------------------------------
    def after_ready(self, client: httpx.Client, plan: Plan, profile: Profile, report) -> None:
        """Launch the model with POST /v1/models (what `xinference launch` does) and wait."""
        from llmctl_backends.xinference.launch import launch_model

        launch_model(self, client, plan, profile, report)
