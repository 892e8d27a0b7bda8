"""The echo-engine backend: `echo-engine serve --model M --host H --port P ...`.

echo-engine (tests/plugin_backend/echo_engine_src) is a stand-in server that answers with
the prompt; its flags are those of echo_engine/server.py `serve_parser()`. This module
uses llmctl's plugin interface (llmdeploy_cli.backend, .capabilities and .memory_rules),
plus `engine_env.executable_for_argv` (argv[0] from the profile's runtime, as every
built-in backend does) and the `profile.Profile` type: docs/writing-a-backend.md walks
through it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from llmdeploy_cli.backend import Backend, Plan, RenderContext, flag
from llmdeploy_cli.capabilities import (
    HF_OFFLINE,
    NOT_SUPPORTED,
    ContainerSpec,
    FlagCommand,
    FlagSource,
    HubVars,
    ModelFormat,
    Recipe,
    Task,
)
from llmdeploy_cli.engine_env import executable_for_argv
from llmdeploy_cli.memory_rules import BaseMemory, MiB, NoPool
from llmdeploy_cli.profile import Profile


class EchoOptions(BaseModel):
    """Keys under the profile's `options:` (anything else is refused, naming the backend)."""

    model_config = ConfigDict(extra="forbid")

    reply_prefix: str | None = Field(None, description="Text put before every answer")
    log_level: str | None = Field(None, description="debug, info or warning")


class EchoBackend(Backend):
    name = "echo"
    summary = "echo-engine: answers with the prompt (a third-party plugin example)"
    default_port = 8765
    executable = "echo-engine"
    distribution = "echo-engine"
    newest_known = "0.1.0"
    Options = EchoOptions
    supports = frozenset(
        {"model.served_name", "server.api_key_env", "resources.device", "resources.max_model_len"}
    )
    install_hint = "llmctl engine install echo"
    timeouts = (30.0, 30.0, 30.0)

    # -- declared capabilities ------------------------------------------------------------
    model_formats = frozenset({ModelFormat.HF_FOLDER})
    tasks = frozenset({Task.CHAT})
    runs_on_cpu = True
    container = ContainerSpec(
        "registry.example/echo-engine:{version}", "/root/.cache/huggingface", "HF_HOME"
    )
    install = Recipe(
        default_version="0.1.0",
        devices=("cpu",),
        packages=("echo-engine=={version}",),
        constraints="llmctl_echo:constraints",  # echo-0.1.0-cpu.txt
    )
    hub = HubVars(
        offline=HF_OFFLINE,
        modelscope=NOT_SUPPORTED,
        cache_env="HF_HOME",
        endpoint_env="HF_ENDPOINT",
    )
    flag_source = FlagSource(
        "echo-engine",
        commands=(FlagCommand("echo-engine serve", "argparse", "echo_engine.server:serve_parser"),),
        snapshots="llmctl_echo:flags",  # echo-0.1.0.json
    )
    memory = NoPool(BaseMemory(20 * MiB, "estimate: a standard-library HTTP server"))

    def build(self, profile: Profile, ctx: RenderContext) -> Plan:
        opts: EchoOptions = self.options(profile)
        argv = [executable_for_argv(self, profile), "serve"]
        flag(argv, "--model", self.model_arg(profile))
        flag(argv, "--served-name", profile.served_name)
        flag(argv, "--host", profile.server.host)
        flag(argv, "--port", self.port(profile, ctx))
        flag(argv, "--max-model-len", profile.resources.max_model_len)
        flag(argv, "--reply-prefix", opts.reply_prefix)
        flag(argv, "--log-level", opts.log_level)
        argv += profile.extra_args
        env = self.base_env(profile, ctx)
        key = ctx.secret(profile.server.api_key_env)
        if key is not None:
            env["ECHO_API_KEY"] = key  # the engine reads its key from the environment
        return self.server_plan(profile, ctx, argv, env)
