"""Xinference: `xinference-local` serves, then one model is launched into it (target 4.1).

Every option below was read from Xinference's own source: the 4.1.0 release
(`xinference/deploy/cmdline.py` `local` and `model_launch`, `xinference/constants.py`,
`xinference/api/restful_api.py` `launch_model`/`list_models`, `xinference/api/routers/`,
`xinference/client/restful/restful_client.py`, `xinference/model/utils.py`), cross-checked
with the xorbitsai/inference repository history (click accepts no abbreviations of long
options, but the exact strings are used anyway):
- server: `xinference-local --host/-H --port/-p --log-level` (host default 127.0.0.1,
  port default 9997, log level default INFO);
- launch: `xinference launch --endpoint/-e --model-name/-n --model-type/-t (LLM)
  --model-engine/-en (required for LLMs) --model-format/-f --size-in-billions/-s
  --quantization/-q --context-length (4.1) --model-uid/-u --replica/-r --n-gpu ("auto",
  "none" = CPU, or a count; the vLLM engine uses it as the tensor-parallel size) --gpu-idx
  --model-path/-mp --enable-thinking --api-key/-ak`; any other `--key value` pair is passed
  to the model unchecked (`allow_extra_args`), so llmctl cannot check those
  (`options.launch_kwargs`). The CLI waits until the model is READY or fails.
- llmctl performs that launch itself through the same REST call the CLI makes
  (`POST /v1/models`, JSON body as `RESTfulClient.launch_model` builds it, waiting for the
  model), so an API key travels in an `Authorization` header and never in a process's
  argv; `render` shows the equivalent `xinference launch` command.
- `/v1/models` lists running models by uid, and requests carry the uid as `model`;
  `/status` answers without auth once the supervisor is up.
- environment: `XINFERENCE_HOME` (default ~/.xinference; also moves the HF and ModelScope
  caches to $XINFERENCE_HOME/huggingface and /modelscope, overriding HF_HOME's hub dir),
  `XINFERENCE_MODEL_SRC` (huggingface, modelscope, openmind_hub, csghub, auto; unset
  guesses from the locale, so llmctl always sets it), `XINFERENCE_AUTH_ADVANCED` (auth on
  by default in 4.x; "0"/"false"/"no" turns it off), `XINFERENCE_TRUST_REMOTE_CODE`
  (off by default; without it model code is only trusted for vetted built-ins).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmdeploy_cli.backend import (
    Backend,
    Command,
    Endpoint,
    Plan,
    RenderContext,
    Step,
    flag,
)
from llmdeploy_cli.engine_env import executable_for_argv, version_tuple
from llmdeploy_cli.errors import ProfileError, ProfileIssue
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    import httpx

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MODEL_TYPES = {"chat": "LLM", "embedding": "embedding", "rerank": "rerank"}
KwargValue = str | int | float | bool


class XinferenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str | None = Field(
        None,
        description="Built-in registry name (e.g. qwen2.5-instruct); default: model.source "
        "when that is not a local directory",
    )
    model_engine: str | None = Field(
        None,
        description="Engine inside Xinference (transformers, vllm, sglang, llama.cpp, ...); "
        "chat models default to transformers",
    )
    model_format: str | None = Field(None, description="pytorch, awq, gptq, ggufv2, mlx, ...")
    model_size_in_billions: int | float | str | None = Field(
        None, description="Size of the registry spec to launch, e.g. 1.5 (sent as 1_5)"
    )
    model_uid: str | None = Field(
        None, description="Uid clients put in `model`; default: model.served_name"
    )
    n_gpu: int | str | None = Field(
        None, description="GPUs for the model: auto (default), none (CPU) or a count"
    )
    gpu_idx: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="Which GPUs of the worker the model may use"
    )
    replica: Annotated[int, Field(ge=1)] | None = Field(None, description="Model replicas")
    enable_thinking: bool = Field(False, description="Thinking mode for hybrid reasoning LLMs")
    auth: bool | None = Field(
        None,
        description="Xinference's own auth (on by default in 4.x). Unset: on when "
        "server.api_key_env is set, else off (XINFERENCE_AUTH_ADVANCED=0)",
    )
    login_user_env: str | None = Field(
        None,
        description="Variable holding a Xinference user name: serve logs in as that user "
        "(POST /token) to launch the model, since API keys cannot launch",
    )
    login_password_env: str | None = Field(
        None, description="Variable holding that user's password (with login_user_env)"
    )
    home: str | None = Field(
        None,
        description="XINFERENCE_HOME (models, caches, auth database); default: a per-profile "
        "folder under llmctl's state dir, set by serve",
    )
    log_level: Literal[LOG_LEVELS] | None = Field(  # type: ignore[valid-type]
        None, description="Server log level (--log-level, default INFO)"
    )
    launch_kwargs: dict[str, KwargValue] = Field(
        default_factory=dict,
        description="Extra `--key value` pairs passed unchecked to the model at launch "
        "(engine kwargs such as gpu_memory_utilization for vllm)",
    )

    @field_validator("n_gpu")
    @classmethod
    def _n_gpu(cls, v):
        # One validator rather than a Union, so an error names options.n_gpu only once.
        if v is None or v in ("auto", "none"):
            return v
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v
        raise ValueError("must be auto, none (CPU) or a GPU count of 1 or more")

    @field_validator("model_size_in_billions")
    @classmethod
    def _size(cls, v):
        return None if v is None else size_arg(v)

    @field_validator("launch_kwargs")
    @classmethod
    def _kwarg_names(cls, v: dict) -> dict:
        for k in v:
            if not k or k.startswith("-") or any(c.isspace() for c in k):
                raise ValueError(f"not a keyword name: {k!r} (write it without leading --)")
        return v


def size_arg(v: int | float | str) -> str:
    """Xinference's spelling of a model size: 7 -> '7', 1.5 -> '1_5' (its registry form)."""
    if isinstance(v, bool):
        raise ValueError("must be a number of billions, e.g. 1.5")
    if isinstance(v, (int, float)):
        if v <= 0:
            raise ValueError("must be positive")
        return str(int(v)) if float(v).is_integer() else repr(float(v)).replace(".", "_")
    s = str(v).strip()
    try:
        return size_arg(float(s.replace("_", ".")))
    except ValueError:
        raise ValueError(f"not a model size in billions: {v!r}") from None


MISSING_NAME = (
    "options.model_name is not set: Xinference needs the registry name of the model family "
    "(e.g. qwen2.5-instruct) to serve a local directory, and the launch will not run without it"
)

REFUSED_HINTS = {
    "resources.gpu_memory_utilization": (
        "Xinference passes memory settings to the engine it runs: for the vllm engine use "
        "options.launch_kwargs: {gpu_memory_utilization: 0.9}"
    ),
    "resources.max_num_seqs": (
        "engine-specific in Xinference: options.launch_kwargs: {max_num_seqs: N} "
        "(transformers and vllm engines)"
    ),
    "model.dtype": "engine-specific in Xinference: pass the engine's kwarg in "
    "options.launch_kwargs",
    "model.reasoning_parser": "Xinference picks the parser from its registry; see "
    "options.enable_thinking",
    "model.tool_call_parser": "Xinference picks the tool parser from its model registry",
    "model.chat_template": "Xinference takes the chat template from its model registry",
    "model.revision": "Xinference pins revisions in its model registry",
}


class XinferenceBackend(Backend):
    name = "xinference"
    summary = "Xinference local cluster + one launched model (many engines behind one API)"
    default_port = 9997
    executable = "xinference-local"
    distribution = "xinference"
    newest_known = "4.1.0"
    Options = XinferenceOptions
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

    # -- static ---------------------------------------------------------------------------
    def options(self, profile: Profile) -> BaseModel:
        try:
            return super().options(profile)
        except ProfileError as e:
            _name_backend(self.name, e.issues)
            raise

    def auth_on(self, profile: Profile, opts: XinferenceOptions) -> bool:
        return opts.auth if opts.auth is not None else bool(profile.server.api_key_env)

    def check(self, profile: Profile, version: str) -> list[ProfileIssue]:
        issues = []
        for issue in super().check(profile, version):
            issue.hint = REFUSED_HINTS.get(issue.key, issue.hint)
            issues.append(issue)
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
        return _name_backend(self.name, issues)

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

        env = self.base_env(profile, ctx)
        # Unset, Xinference guesses the hub from the locale: always say which one.
        env["XINFERENCE_MODEL_SRC"] = profile.hub.source
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
        """Launch the model with POST /v1/models (what `xinference launch` does) and wait.

        Skips the launch when the uid is already running (a server llmctl does not manage,
        or a second `serve` against the same server).
        """
        import time
        from urllib.parse import quote

        import httpx

        from llmdeploy_cli.command import scrub
        from llmdeploy_cli.errors import (
            LlmctlError,
            NotReadyError,
            UnreachableError,
            UsageError,
        )

        if self.model_name(profile, self.options(profile)) is None:
            raise UsageError(MISSING_NAME, hint="e.g. options: {model_name: qwen2.5-instruct}")
        ep = plan.endpoint
        root = ep.base_url.removesuffix("/v1")
        wait = profile.health.load_timeout or self.timeouts[1]
        deadline = time.monotonic() + wait
        try:
            key, secrets = self._launch_credential(client, root, plan, profile, report)
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            while True:
                r = client.get(f"{root}/v1/models/{quote(ep.model, safe='')}", headers=headers)
                if r.status_code == 200:
                    report(f"launch: model uid '{ep.model}' is already running", None)
                    return
                if r.status_code in (401, 403):
                    raise LlmctlError(
                        f"launch: Xinference refused the request ({r.status_code})",
                        hint=_auth_hint(ep),
                    )
                if r.status_code != 503:  # 400: no such uid yet
                    break
                # 503: launched by someone else and still loading: wait for it.
                if time.monotonic() >= deadline:
                    raise NotReadyError(
                        f"launch: model '{ep.model}' was still loading after {wait:.0f} s",
                        hint="raise health.load_timeout",
                    )
                report(f"launch: model uid '{ep.model}' is loading; waiting", None)
                time.sleep(2.0)
            payload = self.launch_payload(profile)
            launch = next(st for st in plan.steps if st.name == "launch")
            report(f"launch: {launch.command.display()}", None)
            r = client.post(
                f"{root}/v1/models",
                json=payload,
                headers=headers,
                timeout=httpx.Timeout(max(deadline - time.monotonic(), 1.0), connect=10.0),
            )
        except httpx.TimeoutException:
            raise NotReadyError(
                f"launch: model '{ep.model}' was not ready after {wait:.0f} s",
                hint="raise health.load_timeout; the server log shows download/load progress",
            ) from None
        except httpx.TransportError as e:
            raise UnreachableError(
                f"launch: Xinference at {root} unreachable ({type(e).__name__})"
            ) from None
        if r.status_code != 200:
            try:
                body = r.json()
                detail = str(body.get("detail", r.text) if isinstance(body, dict) else body)
            except ValueError:
                detail = r.text
            detail = scrub(detail.strip(), secrets)[-2000:]
            hint = _auth_hint(ep) if r.status_code in (401, 403) else None
            raise LlmctlError(
                f"launch failed ({r.status_code}): {detail.splitlines()[-1] if detail else ''}",
                hint=hint or (detail or None),
            )
        report(f"launch: model uid '{ep.model}' is ready", 1.0)

    def _launch_credential(
        self, client: httpx.Client, root: str, plan: Plan, profile: Profile, report
    ) -> tuple[str | None, set[str]]:
        """What the launch sends as its bearer token, and every secret to scrub: the
        profile's key, or, with a login, a fresh access token from POST /token (an API key
        cannot launch, and a token pasted into the environment expires)."""
        from llmdeploy_cli.errors import LlmctlError, UsageError

        opts: XinferenceOptions = self.options(profile)
        key = plan.endpoint.api_key()
        secrets = plan.secrets() | ({key} if key else set())
        if not (opts.login_user_env and self.auth_on(profile, opts)):
            return key, secrets
        env = {**os.environ, **profile.env}
        user, password = env.get(opts.login_user_env), env.get(opts.login_password_env)
        missing = [
            n
            for n, v in ((opts.login_user_env, user), (opts.login_password_env, password))
            if not v
        ]
        if missing:
            raise UsageError(
                f"launch: ${' and $'.join(missing)} not set (options.login_user_env / "
                "login_password_env name them)",
                hint="export the Xinference user name and password before serving",
            )
        secrets.add(password)
        report(f"launch: logging in as '{user}' (POST /token)", None)
        r = client.post(f"{root}/token", json={"username": user, "password": password})
        token = None
        if r.status_code == 200:
            try:
                token = r.json().get("access_token")
            except (ValueError, AttributeError):
                token = None
        if not token:
            raise LlmctlError(
                f"launch: Xinference refused the login of '{user}' ({r.status_code})",
                hint=f"check the user in ${opts.login_user_env} and the password in "
                f"${opts.login_password_env}, and that options.home is the home where the "
                "user was created",
            )
        secrets.add(token)
        return token, secrets


def _auth_hint(ep: Endpoint) -> str:
    if ep.api_key_env:
        return f"check the key in ${ep.api_key_env} and that it may list and launch models"
    return (
        "this Xinference has auth on: set server.api_key_env to a key created in it "
        "(and options.home), or start it with options.auth: false"
    )


def _name_backend(name: str, issues: list[ProfileIssue]) -> list[ProfileIssue]:
    """Every refusal names the backend, as the base check's own messages do."""
    prefix = f"backend '{name}'"
    for issue in issues:
        if prefix not in issue.message:
            issue.message = f"{prefix}: {issue.message}"
    return issues
