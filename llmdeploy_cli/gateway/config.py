"""The gateway file: one YAML document naming the profiles served behind one address.

    name: lab
    listen: {host: 127.0.0.1, port: 4000}
    api_key_env: LAB_GATEWAY_KEY
    profiles: [profiles/qwen-7b.yml, profiles/embed/*.yml]
    defaults: {ttl: 300, queue_timeout: 600, max_concurrency: 64, max_queue: 256,
               min_resident: 30}
    models:
      qwen-7b: {aliases: [gpt-4o-mini], preload: true, pin: true, ttl: 0}
    memory: {gpus: auto, host_ram: auto, reserve: 1GiB}
    shutdown_grace: 30

Loaded with the profile loader's YAML reader, so every problem names its file:line; every
profile is loaded (and checked by its backend) as `llmctl validate` does. Every key is
documented in docs/gateway.md.
"""

from __future__ import annotations

import glob
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmdeploy_cli.errors import ProfileError, ProfileIssue
from llmdeploy_cli.profile import ENV_NAME, NAME
from llmdeploy_cli.yamlfile import SourceMap, load_yaml

Seconds = Annotated[float, Field(ge=0)]


def _size(v):
    """A memory size: bytes as a number, or text such as 24GiB / 512MiB."""
    from llmdeploy_cli.errors import UsageError
    from llmdeploy_cli.models.units import parse_size

    if isinstance(v, bool):
        raise ValueError("a memory size is a number of bytes or text such as 24GiB")
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("a memory size cannot be negative")
        return int(v)
    try:
        return parse_size(str(v))
    except UsageError:
        raise ValueError(f"not a memory size: {v!r} (write it like 24GiB or 512MiB)") from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Listen(_Section):
    host: str = Field("127.0.0.1", description="Address the gateway binds.")
    port: int = Field(4000, ge=1, le=65535, description="Port the gateway binds.")


class ModelPolicy(_Section):
    """Per-model behaviour; `defaults` sets it for every model, `models.NAME` per model."""

    ttl: Seconds = Field(300, description="Unload after this many idle seconds; 0: never.")
    queue_timeout: Annotated[float, Field(gt=0)] = Field(
        600, description="Most seconds a request waits for a start or a free slot (then 503)."
    )
    max_concurrency: Annotated[int, Field(ge=1)] = Field(
        64, description="Requests in flight at once to this model; more wait in FIFO order."
    )
    max_queue: Annotated[int, Field(ge=0)] = Field(
        256, description="Requests waiting for this model; one more is refused with 429."
    )
    min_resident: Seconds = Field(
        30, description="A model loaded for less than this is not evicted for another."
    )


class ModelOverride(_Section):
    aliases: list[str] = Field(default_factory=list, description="More names for `model`.")
    preload: bool = Field(False, description="Start with the gateway.")
    pin: bool = Field(False, description="Never evicted and never unloaded by ttl.")
    need: int | None = Field(
        None,
        description="Memory this model needs, overriding the memory plan (e.g. 6GiB).",
    )
    ttl: Seconds | None = None
    queue_timeout: Annotated[float, Field(gt=0)] | None = None
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    max_queue: Annotated[int, Field(ge=0)] | None = None
    min_resident: Seconds | None = None

    @field_validator("need", mode="before")
    @classmethod
    def _need(cls, v):
        return None if v is None else _size(v)


class Memory(_Section):
    gpus: Literal["auto"] | list[int] = Field(
        "auto", description="GPU budgets by index (sizes), or auto: each GPU's total."
    )
    host_ram: Literal["auto"] | int = Field(
        "auto", description="Host RAM budget for models on the CPU, or auto: total RAM."
    )
    reserve: int = Field(1024**3, description="Kept free on every auto-sized device.")

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, v):
        if v == "auto" or v is None:
            return "auto"
        if isinstance(v, Mapping):  # {0: 24GiB, 1: 24GiB}
            try:
                idx = sorted(int(k) for k in v)
            except (TypeError, ValueError):
                raise ValueError("GPU budgets are keyed by GPU index (0, 1, ...)") from None
            if idx != list(range(len(idx))):
                raise ValueError("GPU indices must be 0, 1, ... with none missing")
            v = [v[k] if k in v else v[str(k)] for k in idx]
        if not isinstance(v, list):
            raise ValueError("auto, a list of sizes, or a mapping of GPU index to size")
        return [_size(x) for x in v]

    @field_validator("host_ram", mode="before")
    @classmethod
    def _host(cls, v):
        return "auto" if v in ("auto", None) else _size(v)

    @field_validator("reserve", mode="before")
    @classmethod
    def _reserve(cls, v):
        return _size(v)


class Upstream(_Section):
    connect_timeout: Annotated[float, Field(gt=0)] = Field(
        10, description="Seconds to connect to an engine."
    )
    idle_timeout: Annotated[float, Field(gt=0)] = Field(
        600, description="Most seconds between two reads from an engine's response."
    )


class GatewayFile(_Section):
    name: str = Field(pattern=NAME, description="The run's name (status, stop, logs).")
    listen: Listen = Field(default_factory=Listen)
    api_key_env: str | None = Field(
        None, pattern=ENV_NAME, description="Environment variable holding the gateway key."
    )
    profiles: list[str] = Field(min_length=1, description="Profile files and globs.")
    defaults: ModelPolicy = Field(default_factory=ModelPolicy)
    models: dict[str, ModelOverride] = Field(default_factory=dict)
    memory: Memory = Field(default_factory=Memory)
    shutdown_grace: Seconds = Field(30, description="Seconds in-flight requests get at stop.")
    max_body: int = Field(32 * 1024**2, description="Largest request body (then 413).")
    upstream: Upstream = Field(default_factory=Upstream)

    @field_validator("max_body", mode="before")
    @classmethod
    def _body(cls, v):
        return _size(v)

    @field_validator("listen", "defaults", "models", "memory", "upstream", mode="before")
    @classmethod
    def _null(cls, v):
        return {} if v is None else v

    @field_validator("models", mode="before")
    @classmethod
    def _null_models(cls, v):
        if isinstance(v, Mapping):
            return {k: {} if m is None else m for k, m in v.items()}
        return v


# -- the loaded gateway --------------------------------------------------------------------


@dataclass
class GatewayModel:
    """One model behind the gateway: its profile (resolved) and its policy."""

    name: str  # the profile's name
    served_name: str
    aliases: list[str]
    profile_path: Path
    resolved: object  # resolve.Resolved
    policy: ModelPolicy
    preload: bool = False
    pin: bool = False
    need_override: int | None = None

    @property
    def backend(self):
        return self.resolved.backend

    @property
    def profile(self):
        return self.resolved.profile

    @property
    def evictable(self) -> bool:
        """False for a profile llmctl does not spawn (managed: false) and for an engine that
        manages its own models: routed to, never evicted, its memory not counted."""
        from llmdeploy_cli.gateway.caps import manages_own_models

        return self.profile.server.managed and not manages_own_models(self.backend)

    def names(self) -> list[str]:
        return [self.served_name, *self.aliases]


@dataclass
class Gateway:
    file: Path
    spec: GatewayFile
    models: dict[str, GatewayModel] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _names: dict | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def by_request_name(self) -> dict[str, GatewayModel]:
        """Request name (served name or alias) -> model; built once (a loaded gateway is
        not changed: a reload makes a new one)."""
        if self._names is None:
            self._names = {n: m for m in self.models.values() for n in m.names()}
        return self._names


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_gateway(path: str | Path, environ: Mapping[str, str] | None = None) -> Gateway:
    """Read the gateway file and every profile it names. Raises ProfileError listing every
    problem found (in the gateway file and in each profile) at once."""
    from llmdeploy_cli.resolve import resolve

    environ = os.environ if environ is None else environ
    path = Path(path)
    data, smap = load_yaml(path, environ)
    spec = _spec(data, smap)
    issues: list[ProfileIssue] = []

    if not is_loopback(spec.listen.host) and not spec.api_key_env:
        issues.append(
            smap.issue(
                ("listen", "host"),
                f"the gateway listens on {spec.listen.host} with no key",
                hint="set api_key_env to a variable holding the key, or listen on 127.0.0.1",
            )
        )
    if spec.api_key_env and not environ.get(spec.api_key_env):
        issues.append(
            smap.issue(
                ("api_key_env",),
                f"environment variable {spec.api_key_env} is not set",
                hint=f"export {spec.api_key_env}=... (the key clients must send)",
            )
        )

    files = _profile_files(spec, smap, path.parent, issues)
    gw = Gateway(path.resolve(), spec)
    seen: dict[str, str] = {}  # request name -> what claimed it
    for i, f in files:
        try:
            r = resolve(f, environ, port=0)
        except ProfileError as e:
            issues.extend(e.issues)
            continue
        p = r.profile
        if p.name in gw.models:
            issues.append(
                smap.issue(
                    ("profiles", i),
                    f"profile name '{p.name}' is used twice "
                    f"({gw.models[p.name].profile_path} and {f})",
                    hint="profile names must be unique in one gateway",
                )
            )
            continue
        ov = spec.models.get(p.name, ModelOverride())
        merged = spec.defaults.model_dump()
        merged.update({k: v for k, v in ov.model_dump().items() if k in merged and v is not None})
        gm = GatewayModel(
            name=p.name,
            served_name=p.served_name,
            aliases=list(ov.aliases),
            profile_path=f,
            resolved=r,
            policy=ModelPolicy.model_validate(merged),
            preload=ov.preload,
            pin=ov.pin,
            need_override=ov.need,
        )
        for n in gm.names():
            if n in seen:
                loc = ("models", p.name, "aliases") if n in ov.aliases else ("profiles", i)
                issues.append(
                    smap.issue(
                        loc,
                        f"the name '{n}' is claimed by both {seen[n]} and {p.name}",
                        hint="every served name and alias must be unique in one gateway",
                    )
                )
            seen[n] = p.name
        gw.models[p.name] = gm
        gw.warnings.extend(f"{p.name}: {w}" for w in r.plan.warnings)
    for name in spec.models:
        if name not in gw.models and not any(i.loc[:1] == ("profiles",) for i in issues):
            issues.append(
                smap.issue(
                    ("models", name),
                    f"no profile named '{name}' among the gateway's profiles",
                    hint="models: is keyed by profile name: " + ", ".join(sorted(gw.models)),
                )
            )
    if issues:
        raise ProfileError(issues)
    return gw


def _spec(data, smap: SourceMap) -> GatewayFile:
    from llmdeploy_cli.profile import _issue_from_pydantic

    if not isinstance(data, dict):
        raise ProfileError([smap.issue((), "a gateway file is a mapping (name, profiles, ...)")])
    try:
        return GatewayFile.model_validate(data)
    except ValidationError as e:
        issues = []
        for err in e.errors():
            issue = _issue_from_pydantic(err, smap)
            if err["type"] == "extra_forbidden":
                issue.hint = _known_keys(err["loc"][:-1])
            issues.append(issue)
        raise ProfileError(issues) from None


def _known_keys(loc: tuple) -> str | None:
    model: type[BaseModel] = GatewayFile
    for part in loc:
        if model is GatewayFile and part == "models":
            model = ModelOverride
            continue
        f = model.model_fields.get(str(part))
        ann = getattr(f, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif model is ModelOverride:
            continue
        else:
            return None
    return "known keys here: " + ", ".join(sorted(model.model_fields))


def _profile_files(spec, smap, base: Path, issues) -> list[tuple[int, Path]]:
    out: list[tuple[int, Path]] = []
    seen: set[Path] = set()
    for i, pattern in enumerate(spec.profiles):
        full = Path(os.path.expanduser(pattern))
        full = full if full.is_absolute() else base / full
        if glob.has_magic(str(full)):
            matches = sorted(Path(m) for m in glob.glob(str(full)))
            if not matches:
                issues.append(smap.issue(("profiles", i), f"no file matches {pattern!r}"))
        else:
            matches = [full]
            if not full.is_file():
                issues.append(smap.issue(("profiles", i), f"profile file not found: {pattern}"))
                continue
        for m in matches:
            m = m.resolve()
            if m not in seen:
                seen.add(m)
                out.append((i, m))
    return out
