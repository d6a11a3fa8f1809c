"""envinfo: NVML slowdown reasons (with a fake NVML), device labels, slugs and config hashes."""

from types import SimpleNamespace

import pytest
import torch

from nvfp4bench import envinfo

# The bit values of NVML's nvmlClocksThrottleReason* constants (nvml.h).
NVML_BITS = {
    "nvmlClocksThrottleReasonGpuIdle": 0x1,
    "nvmlClocksThrottleReasonApplicationsClocksSetting": 0x2,
    "nvmlClocksThrottleReasonSwPowerCap": 0x4,
    "nvmlClocksThrottleReasonHwSlowdown": 0x8,
    "nvmlClocksThrottleReasonSyncBoost": 0x10,
    "nvmlClocksThrottleReasonSwThermalSlowdown": 0x20,
    "nvmlClocksThrottleReasonHwThermalSlowdown": 0x40,
    "nvmlClocksThrottleReasonHwPowerBrakeSlowdown": 0x80,
    "nvmlClocksThrottleReasonDisplayClockSetting": 0x100,
}
FAKE_NVML = SimpleNamespace(**NVML_BITS)


def test_nvml_bits_match_the_installed_bindings():
    pynvml = pytest.importorskip("pynvml")
    for name, bit in NVML_BITS.items():
        assert getattr(pynvml, name) == bit, name


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (0, []),
        (0x4, ["sw_power_cap"]),
        (0x8 | 0x40, ["hw_slowdown", "hw_thermal"]),
        (0x4 | 0x8 | 0x20 | 0x40 | 0x80, ["sw_power_cap", "hw_slowdown", "sw_thermal",
                                         "hw_thermal", "hw_power_brake"]),
        # idle, application clocks, sync boost and display clocks are not a slowdown
        (0x1 | 0x2 | 0x10 | 0x100, []),
        (0x1 | 0x20, ["sw_thermal"]),
    ],
)  # fmt: skip
def test_slowdown_reasons_map_mask_bits_to_labels(mask, expected):
    assert envinfo.slowdown_reasons(mask, FAKE_NVML) == expected


def test_slowdown_reasons_tolerate_bindings_without_a_constant():
    old = SimpleNamespace(nvmlClocksThrottleReasonSwPowerCap=0x4)  # an older pynvml
    assert envinfo.slowdown_reasons(0xFF, old) == ["sw_power_cap"]


class FakeNvml(SimpleNamespace):
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        return self.mask

    def nvmlDeviceGetClockInfo(self, handle, clock):
        return {1: 1200, 2: 2619}[clock]

    def nvmlDeviceGetMaxClockInfo(self, handle, clock):
        return 1980

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 83

    def nvmlDeviceGetPowerUsage(self, handle):
        return 699_500

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 700_000


def test_gpu_state_reports_clocks_and_slowdowns(monkeypatch):
    nvml = FakeNvml(**NVML_BITS, mask=0x1 | 0x4 | 0x40)
    monkeypatch.setattr(envinfo, "_nvml", lambda: nvml)
    monkeypatch.setattr(envinfo, "_nvml_handle", lambda nvml, device: "handle")
    state = envinfo.gpu_state(torch.device("cuda", 0))
    assert state == {
        "sm_clock_mhz": 1200,
        "mem_clock_mhz": 2619,
        "max_sm_clock_mhz": 1980,
        "temperature_c": 83,
        "power_w": 699.5,
        "power_limit_w": 700.0,
        "throttle_reasons": ["sw_power_cap", "hw_thermal"],
    }


def test_gpu_state_records_an_nvml_error_and_is_none_on_cpu_or_without_nvml(monkeypatch):
    class Broken(FakeNvml):
        def nvmlDeviceGetTemperature(self, handle, sensor):
            raise RuntimeError("Not Supported")

    monkeypatch.setattr(envinfo, "_nvml", lambda: Broken(**NVML_BITS, mask=0))
    monkeypatch.setattr(envinfo, "_nvml_handle", lambda nvml, device: "handle")
    assert envinfo.gpu_state(torch.device("cuda", 0)) == {"error": "RuntimeError: Not Supported"}
    assert envinfo.gpu_state(torch.device("cpu")) is None
    monkeypatch.setattr(envinfo, "_nvml", lambda: None)
    assert envinfo.gpu_state(torch.device("cuda", 0)) is None


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
        ("NVIDIA B200", "nvidia-b200"),
        ("NVIDIA GeForce RTX 5090", "nvidia-geforce-rtx-5090"),
        ("  NVIDIA H200 (NVL) ", "nvidia-h200-nvl"),
    ],
)
def test_slug(name, slug):
    assert envinfo.slug(name) == slug


def test_device_label(monkeypatch):
    assert envinfo.device_label("cpu") == "cpu"
    assert envinfo.device_label("auto", "my-cluster.h100") == "my-cluster.h100"
    assert envinfo.device_label("cuda", "login-node") == "login-node"  # no GPU needed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert envinfo.device_label("auto") == "nvidia-h100-80gb-hbm3"
    assert envinfo.device_label("cpu") == "cpu"


def test_config_hash_is_stable_and_order_independent():
    settings = {"batch_sizes": [1, 2], "device": "cuda", "rep_ms": 200, "seed": 0}
    shuffled = {"seed": 0, "rep_ms": 200, "device": "cuda", "batch_sizes": [1, 2]}
    assert envinfo.config_hash(settings) == envinfo.config_hash(shuffled)
    # Pinned: a different hash for the same settings would hide that results are comparable.
    assert envinfo.config_hash(settings) == "5223743eb6fa7905"
    assert envinfo.config_hash({**settings, "rep_ms": 100}) != envinfo.config_hash(settings)
    assert envinfo.config_hash({**settings, "batch_sizes": [2, 1]}) != envinfo.config_hash(settings)


def test_gpu_identity_names_the_machine_index_the_job_saw(monkeypatch):
    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", uuid="3c1f1411-7be9")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    envinfo.gpu_identity.cache_clear()
    try:
        # cuda:1 of a job whose slot made GPUs 3 and 5 visible is the machine's GPU 5
        assert envinfo.gpu_identity(torch.device("cuda", 1)) == (
            "NVIDIA H100 80GB HBM3 #5 GPU-3c1f1411-7be9"
        )
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        envinfo.gpu_identity.cache_clear()
        assert envinfo.gpu_identity(torch.device("cuda", 1)).split()[-2] == "#1"
        assert envinfo.gpu_identity(torch.device("cpu")) == ""
    finally:
        envinfo.gpu_identity.cache_clear()
