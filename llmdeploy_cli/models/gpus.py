"""The GPUs on this machine, through NVML (pynvml), else nvidia-smi: the one place plan,
doctor and preflight ask."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from llmdeploy_cli.models.units import MiB


@dataclass
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    driver: str | None = None
    cuda: str | None = None
    compute_cap: tuple[int, int] | None = None  # (major, minor); None: not reported

    @property
    def capability(self) -> str:
        return f"{self.compute_cap[0]}.{self.compute_cap[1]}" if self.compute_cap else "?"


def query_gpus(timeout: float = 5.0) -> tuple[list[GpuInfo], str | None]:
    """GPUs through NVML (pynvml) or nvidia-smi; ([], why) when neither answers."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            try:
                driver = _s(pynvml.nvmlSystemGetDriverVersion())
                try:
                    cv = pynvml.nvmlSystemGetCudaDriverVersion()
                    cuda = f"{cv // 1000}.{cv % 1000 // 10}"
                except Exception:  # noqa: BLE001 - older NVML
                    cuda = None
                out = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                    name = _s(pynvml.nvmlDeviceGetName(h))
                    try:
                        cc = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))[:2]
                    except Exception:  # noqa: BLE001 - older NVML
                        cc = None
                    info = GpuInfo(i, name, int(mem.total), int(mem.free), driver, cuda, cc)
                    out.append(info)
                return out, None
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - fall back to nvidia-smi
            pass
    return _nvidia_smi(timeout)


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _nvidia_smi(timeout: float) -> tuple[list[GpuInfo], str | None]:
    import shutil

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], "nvidia-smi not found and pynvml not installed"
    fields = "index,name,memory.total,memory.free,driver_version"
    try:
        # compute_cap is a query field from driver 510 on; older drivers refuse the query,
        # so it is asked again without it.
        proc = _query(exe, fields + ",compute_cap", timeout)
        if proc.returncode != 0 and "compute_cap" in (proc.stderr + proc.stdout):
            proc = _query(exe, fields, timeout)
    except subprocess.TimeoutExpired:
        return [], f"nvidia-smi did not answer in {timeout:g} s"
    except OSError as e:
        return [], f"nvidia-smi could not run: {e}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return [], lines[-1] if lines else f"nvidia-smi exited {proc.returncode}"
    cuda = None
    try:
        head = subprocess.run([exe], capture_output=True, text=True, timeout=timeout).stdout
        m = re.search(r"CUDA Version:\s*([0-9.]+)", head)
        cuda = m.group(1) if m else None
    except (subprocess.TimeoutExpired, OSError):
        pass
    out = []
    for line in proc.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        try:
            out.append(
                GpuInfo(
                    int(parts[0]),
                    parts[1],
                    int(float(parts[2]) * MiB),
                    int(float(parts[3]) * MiB),
                    parts[4],
                    cuda,
                    _cc(parts[5]) if len(parts) > 5 else None,
                )
            )
        except ValueError:
            continue
    return out, None if out else "nvidia-smi listed no GPU"


def _query(exe: str, fields: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _cc(text: str) -> tuple[int, int] | None:
    """'8.9' -> (8, 9); '[N/A]' and the like -> None."""
    m = re.match(r"^\s*(\d+)\.(\d+)\s*$", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def visible_gpus(profile, gpus: list, environ=None) -> list:
    """The GPUs the engine will see: resources.visible_devices, else CUDA_VISIBLE_DEVICES."""
    devs = profile.resources.visible_devices
    if devs is None:
        raw = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
        if not raw:
            return gpus
        devs = raw
    if isinstance(devs, str):
        try:
            idx = [int(x) for x in devs.split(",") if x.strip()]
        except ValueError:
            return gpus
    else:
        idx = list(devs)
    chosen = [g for g in gpus if g.index in idx]
    return chosen or gpus
