"""What a measurement ran on: device choice, the GPU's name/slug, NVML state, software versions."""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from . import __version__

# NVML throttle reasons that mean the GPU slowed itself down (idle or app-clock settings do not).
_SLOWDOWN_REASONS = {
    "nvmlClocksThrottleReasonSwPowerCap": "sw_power_cap",
    "nvmlClocksThrottleReasonHwSlowdown": "hw_slowdown",
    "nvmlClocksThrottleReasonSwThermalSlowdown": "sw_thermal",
    "nvmlClocksThrottleReasonHwThermalSlowdown": "hw_thermal",
    "nvmlClocksThrottleReasonHwPowerBrakeSlowdown": "hw_power_brake",
}


def resolve_device(setting: str) -> torch.device:
    """auto -> cuda if available, else cpu; cuda without a GPU is an error."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for, but torch sees no CUDA GPU")
    return torch.device(setting)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_label(device_setting: str, label_setting: str = "auto") -> str:
    """Name of the results/<label>/ folder: the GPU name as a slug, or cpu."""
    if label_setting != "auto":
        return label_setting
    if device_setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device: cuda on a machine without a CUDA GPU: set device_label (the results "
            "folder name) to build the jobs here for GPU nodes, e.g. --config device_label=h100"
        )
    device = resolve_device(device_setting)
    if device.type == "cpu":
        return "cpu"
    return slug(torch.cuda.get_device_name(device))


def config_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


def _nvml_handle(nvml, device: torch.device):
    """NVML handle of a torch device, by PCI bus id (NVML ignores CUDA_VISIBLE_DEVICES)."""
    props = torch.cuda.get_device_properties(device)
    bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
    return nvml.nvmlDeviceGetHandleByPciBusId(bus_id)


@functools.cache
def gpu_identity(device: torch.device) -> str:
    """The GPU that times a row, as the job saw it: name, its index on the machine (the
    CUDA_VISIBLE_DEVICES entry a GPU slot set, else torch's index) and UUID, e.g.
    "NVIDIA H100 80GB HBM3 #3 GPU-3c1f1411-..."; empty on the CPU."""
    if device.type != "cuda":
        return ""
    index = device.index or 0
    visible = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e]
    machine_index = visible[index] if index < len(visible) else str(index)
    props = torch.cuda.get_device_properties(index)
    return f"{props.name} #{machine_index} GPU-{getattr(props, 'uuid', '?')}"


def gpu_state(device: torch.device) -> dict | None:
    """Clocks, temperature, power and active slowdown reasons, or None without NVML / on CPU."""
    if device.type != "cuda":
        return None
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        handle = _nvml_handle(nvml, device)
        reasons = nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)
        return {
            "sm_clock_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
            "mem_clock_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM),
            "temperature_c": nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
            "power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            "power_limit_w": nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
            "throttle_reasons": slowdown_reasons(reasons, nvml),
        }
    except Exception as error:  # NVML may lack a query on some drivers: record why
        return {"error": f"{type(error).__name__}: {error}"}


def slowdown_reasons(mask: int, nvml) -> list[str]:
    return [
        label
        for attr, label in _SLOWDOWN_REASONS.items()
        if hasattr(nvml, attr) and mask & getattr(nvml, attr)
    ]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        commit = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if not re.fullmatch(r"[0-9a-f]{40}", commit):  # a copy without git history
            return None
        return commit + ("-dirty" if dirty else "")
    except Exception:
        return None


def environment(device: torch.device) -> dict:
    """Everything that identifies where and with what a result was measured."""
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "vllm": _version("vllm"),
        "nvfp4bench": __version__,
        "git_commit": _git_commit(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        record.update(
            gpu_name=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            gpu_uuid=str(getattr(props, "uuid", "")),
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
        nvml = _nvml()
        if nvml is not None:
            record["driver"] = nvml.nvmlSystemGetDriverVersion()
    return record
