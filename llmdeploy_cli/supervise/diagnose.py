"""Why did the engine fail? Read its last log lines and say what to change.

Each diagnosis names the cause in one line and the fix with concrete values taken from the
profile (a lower gpu_memory_utilization, a shorter max_model_len, the package to install
into which environment, the process that holds the port).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from llmdeploy_cli.backend import Backend
    from llmdeploy_cli.profile import Profile


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    message: str
    fix: str

    def as_dict(self) -> dict:
        return {"cause": self.cause, "message": self.message, "fix": self.fix}

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}"


OOM = re.compile(
    r"CUDA out of memory|OutOfMemoryError|out of memory|No available memory for the cache "
    r"blocks|larger than the available KV cache memory|Insufficient memory|"
    r"cudaErrorMemoryAllocation|failed to allocate .* memory",
    re.I,
)
KV_TOO_SMALL = re.compile(
    r"max_model_len|max seq len|KV cache (?:memory|is needed)|cache blocks", re.I
)
MODULE = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '([\w.]+)'")
IMPORT_NAME = re.compile(r"ImportError: cannot import name '(\w+)' from '([\w.]+)'")
ADDR_IN_USE = re.compile(r"address already in use|Errno 98|EADDRINUSE|bind.*failed", re.I)
MISSING_FILES = re.compile(
    r"does not appear to have (?:a )?files? named|No such file or directory|"
    r"Can't load (?:the )?(?:tokenizer|config)|is not a local folder and is not a valid model|"
    r"Incomplete safetensors|SafetensorError|HeaderTooLarge|unexpected EOF|"
    r"We couldn't connect to|LocalEntryNotFoundError|OfflineModeIsEnabled",
    re.I,
)
CUDA_DRIVER = re.compile(
    r"CUDA driver version is insufficient|NVIDIA driver on your system is too old|"
    r"no kernel image is available|Found no NVIDIA driver|CUDA initialization|"
    r"libcuda\.so|libcudart\.so|cudaErrorInsufficientDriver|"
    r"forward compatibility was attempted|unsupported (?:GPU|compute capability)",
    re.I,
)

# Python module -> the distribution that provides it (where they differ).
PACKAGES = {
    "flash_attn": "flash-attn",
    "fastapi": "'transformers[serving]' (fastapi, uvicorn)",
    "uvicorn": "'transformers[serving]' (fastapi, uvicorn)",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "google.protobuf": "protobuf",
    "sentencepiece": "sentencepiece",
    "bitsandbytes": "bitsandbytes",
    "xllamacpp": "xllamacpp",
    "llama_cpp": "llama-cpp-python",
}


def diagnose(
    lines: list[str],
    profile: Profile | None = None,
    backend: Backend | None = None,
    *,
    port: int | None = None,
) -> list[Diagnosis]:
    text = "\n".join(lines)
    found: list[Diagnosis] = []
    if OOM.search(text):
        found.append(_oom(text, profile, backend))
    m = MODULE.search(text)
    if m:
        found.append(_module(m.group(1), profile, backend))
    elif IMPORT_NAME.search(text):
        m2 = IMPORT_NAME.search(text)
        found.append(
            Diagnosis(
                "import",
                f"the engine's environment has an incompatible '{m2.group(2)}' "
                f"(cannot import {m2.group(1)})",
                f"install the versions the engine pins into its env: {_pip(profile, backend)} "
                f"install --upgrade {m2.group(2).split('.')[0]}",
            )
        )
    if ADDR_IN_USE.search(text):
        found.append(_port(port, profile))
    if CUDA_DRIVER.search(text):
        found.append(
            Diagnosis(
                "cuda-driver",
                "the CUDA runtime of the engine's torch does not match this machine's driver",
                "compare `nvidia-smi` (the driver's highest CUDA version) with "
                "`python -c 'import torch; print(torch.version.cuda)'` in the engine's env, "
                "and install a torch/engine build for a CUDA the driver supports",
            )
        )
    if MISSING_FILES.search(text):
        found.append(_files(profile, backend))
    return found


def exit_diagnosis(returncode: int | None) -> Diagnosis | None:
    """What an engine's death by a signal suggests (None when it exited by itself)."""
    from llmdeploy_cli.supervise.procgroup import signal_of

    name = signal_of(returncode)
    if name is None:
        return None
    what = f"the engine was killed by {name} (exit status {returncode})"
    if name == "SIGKILL":
        return Diagnosis(
            "signal",
            what,
            "out of memory? the kernel's OOM killer sends SIGKILL: check `dmesg` (or "
            "`journalctl -k`) for 'Out of memory: Killed process', then give the engine "
            "less to hold in host RAM (a smaller model, dtype or context; fewer workers) or "
            "the machine (or container) more memory",
        )
    if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGABRT", "SIGFPE"):
        return Diagnosis(
            "signal",
            what + ": a crash in native code",
            "see the engine's last log lines; a CUDA/driver mismatch, a CPU without an "
            "instruction set the build needs, or a broken install are the usual causes",
        )
    return Diagnosis(
        "signal",
        what + ", sent from outside llmctl",
        "find who sent it (a job scheduler, another supervisor, a timeout wrapper)",
    )


def _oom(text: str, profile: Profile | None, backend: Backend | None = None) -> Diagnosis:
    r = profile.resources if profile is not None else None

    def can(key: str) -> bool:  # suggest only keys this backend translates
        return backend is None or f"resources.{key}" in backend.supports

    fixes = []
    util = r.gpu_memory_utilization if r is not None else None
    if can("gpu_memory_utilization"):
        if util is None:
            fixes.append("set resources.gpu_memory_utilization: 0.80")
        elif util > 0.3:
            fixes.append(
                f"lower resources.gpu_memory_utilization from {util:g} to "
                f"{max(0.3, util - 0.1):.2f}"
            )
    mml = r.max_model_len if r is not None else None
    if can("max_model_len"):
        if mml is None:
            fixes.append("set resources.max_model_len: 8192 (the full context may not fit)")
        elif mml > 512:
            fixes.append(f"lower resources.max_model_len from {mml} to {max(512, mml // 2)}")
    seqs = r.max_num_seqs if r is not None else None
    if can("max_num_seqs"):
        if seqs is None:
            fixes.append("set resources.max_num_seqs: 64")
        elif seqs > 1:
            fixes.append(f"lower resources.max_num_seqs from {seqs} to {max(1, seqs // 2)}")
    if r is not None and r.tensor_parallel == 1 and can("tensor_parallel"):
        fixes.append("or spread the model over more GPUs (resources.tensor_parallel: 2)")
    if not fixes:
        fixes.append(
            "load a smaller model, a smaller dtype (model.dtype: bfloat16) or a quantized "
            "one (model.quantization), or use an engine with a memory budget (vllm, sglang)"
        )
    what = "out of GPU memory"
    if KV_TOO_SMALL.search(text):
        what += " (the KV cache does not fit the context length)"
    return Diagnosis(
        "oom",
        what,
        "; ".join(fixes) + "; check `nvidia-smi` for other processes holding GPU memory",
    )


def _env_prefix(profile, backend) -> Path | None:
    if profile is None:
        return None
    from llmdeploy_cli.engine_env import env_prefix, find_executable

    prefix = env_prefix(profile)
    if prefix is None and backend is not None:
        exe = find_executable(backend, profile)
        if exe:
            prefix = Path(exe).parent.parent
    return prefix


def _pip(profile, backend) -> str:
    prefix = _env_prefix(profile, backend)
    return f"{prefix}/bin/python -m pip" if prefix else "pip (in the engine's environment)"


def _module(mod: str, profile, backend) -> Diagnosis:
    top = mod.split(".")[0]
    pkg = PACKAGES.get(mod) or PACKAGES.get(top) or top.replace("_", "-")
    prefix = _env_prefix(profile, backend)
    where = f"the engine's environment ({prefix})" if prefix else "the engine's environment"
    return Diagnosis(
        "module",
        f"the engine needs the Python module '{mod}', which {where} does not have",
        f"install it there: {_pip(profile, backend)} install {pkg}",
    )


def port_holder(port: int | None) -> str | None:
    """'pid 123 (python3 -m http.server)' for the process listening on `port`, if visible."""
    if not port:
        return None
    try:
        import psutil

        conns = psutil.net_connections(kind="inet")
    except Exception:  # noqa: BLE001 - AccessDenied on some systems
        conns = []
    for c in conns:
        if c.laddr and c.laddr.port == port and c.status == "LISTEN" and c.pid:
            return _describe(c.pid)
    # Fallback: our own processes' sockets (net_connections needs no root for these).
    try:
        import psutil

        for p in psutil.process_iter():
            try:
                for c in p.net_connections(kind="inet"):
                    if c.laddr and c.laddr.port == port and c.status == "LISTEN":
                        return _describe(p.pid)
            except (psutil.Error, OSError):
                continue
    except Exception:  # noqa: BLE001  # pragma: no cover
        pass
    return None


def _describe(pid: int) -> str:
    import psutil

    try:
        p = psutil.Process(pid)
        cmd = " ".join(p.cmdline()[:6]) or p.name()
    except psutil.Error:
        return f"pid {pid}"
    if len(cmd) > 120:
        cmd = cmd[:117] + "..."
    return f"pid {pid} ({cmd})"


def _port(port: int | None, profile) -> Diagnosis:
    holder = port_holder(port)
    who = holder or "another process"
    return Diagnosis(
        "port",
        f"port {port} is already in use by {who}" if port else "the address is already in use",
        "stop that process (llmctl stop NAME if it is one of yours), or set server.port "
        "to another port (or `port: auto`)",
    )


def _files(profile, backend) -> Diagnosis:
    path = profile.model_path() if profile is not None else None
    if path is not None:
        from llmdeploy_cli.models.completeness import model_failures

        probs = model_failures(path, backend)
        if probs:
            p = probs[0]
            return Diagnosis("model-files", p.message, p.fix or "fix model.source")
        return Diagnosis(
            "model-files",
            f"the engine could not read a file of the model at {path}",
            "check that the folder is complete and readable (llmctl doctor PROFILE)",
        )
    return Diagnosis(
        "model-files",
        "the engine could not find the model files",
        "point model.source at a complete local folder, or download the model first "
        "(with offline: true nothing is fetched)",
    )
