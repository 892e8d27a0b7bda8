"""Ollama's model actions once the server answers: pull, create (blob upload), preload.

These talk to a running Ollama through the ollama client library and its REST API; the
pure side (what to pull or create, the Modelfile) is model.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl_backends.ollama.model import ModelSpec, OllamaOptions, tagged

from llmdeploy_cli.backend import Plan
from llmdeploy_cli.errors import LlmctlError, PreflightError, UnreachableError
from llmdeploy_cli.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    import httpx


def prepare_model(
    client: httpx.Client,
    plan: Plan,
    profile: Profile,
    opts: OllamaOptions,
    spec: ModelSpec,
    default_load_s: float,
    report,
) -> None:
    """Pull and/or create the model through the ollama library, then preload it."""
    import httpx
    import ollama

    from llmdeploy_cli.openai_http.clients import use_proxy_env
    from llmdeploy_cli.openai_http.failures import CONNECT, TIMEOUT, classify

    root = plan.endpoint.base_url.removesuffix("/v1")
    load_s = profile.health.load_timeout or default_load_s
    # the one proxy rule: proxy variables for a remote Ollama, never for loopback
    oc = ollama.Client(
        host=root, timeout=httpx.Timeout(load_s, connect=10.0), trust_env=use_proxy_env(root)
    )
    step, name = "pull", spec.pull_name or spec.served
    try:
        if spec.pull_name:
            _pull(oc, spec.pull_name, profile, opts, report)
        if spec.create:
            step, name = "create", spec.served
            _create(oc, client, root, spec, plan, report)
        if opts.preload and profile.model.task == "chat":
            step, name = "preload", spec.served
            report(f"preload: loading {spec.served}", None)
            kw = {} if opts.keep_alive is None else {"keep_alive": opts.keep_alive}
            oc.generate(model=spec.served, **kw)
            report(f"preload: {spec.served} loaded", 1.0)
    except ollama.ResponseError as e:
        raise _explain(step, name, e) from None
    except (ConnectionError, httpx.HTTPError) as e:  # the library raises both
        failure = classify(e)
        if failure.kind == CONNECT or isinstance(e, ConnectionError):
            raise UnreachableError(
                f"{step}: cannot connect to Ollama at {root}",
                hint="is it running? (server.managed: false expects it already up)",
            ) from None
        if failure.kind == TIMEOUT:
            raise LlmctlError(
                f"{step} {name}: Ollama did not answer within {load_s:.0f} s",
                hint="raise health.load_timeout for big models or slow links",
            ) from None
        raise LlmctlError(f"{step} {name}: {failure.kind}: {failure.message}") from None
    finally:
        oc.close()


def _pull(oc, name: str, profile: Profile, opts: OllamaOptions, report) -> None:
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


def _create(oc, client, root: str, spec: ModelSpec, plan: Plan, report) -> None:
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
    from llmdeploy_cli.openai_http.wire import body_error_text

    return body_error_text(r.content, r.status_code, 200)


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
