"""The provider registry: gating by device and capability, and each provider's own reference."""

import types

import pytest
import torch
import torch.nn.functional as F
from test_sweep import settings

from nvfp4bench import config, providers, sweep
from nvfp4bench.numerics import relative_error
from nvfp4bench.providers import PROVIDERS, availability, get_provider, requirements
from nvfp4bench.providers.base import Prepared, Provider

SEED_PROVIDERS = ["torch-bf16", "nvfp4", "nvfp4-noquant"]
TORCH_NVFP4_PROVIDERS = ["torch-nvfp4", "torch-nvfp4-noquant"]
TRITON_PROVIDERS = ["nvfp4-triton", "nvfp4-triton-noquant"]
CUDA_PROVIDERS = ["nvfp4-cuda", "nvfp4-cuda-noquant"]
GPU_PROVIDERS = SEED_PROVIDERS[1:] + TORCH_NVFP4_PROVIDERS + TRITON_PROVIDERS + CUDA_PROVIDERS


def test_registry_holds_the_seed_torch_and_triton_providers():
    assert set(SEED_PROVIDERS + TORCH_NVFP4_PROVIDERS + TRITON_PROVIDERS) <= set(PROVIDERS)
    assert not get_provider("torch-bf16").uses_had_size
    assert get_provider("nvfp4").uses_had_size and get_provider("nvfp4-triton").uses_had_size
    assert get_provider("torch-nvfp4").uses_had_size
    assert not get_provider("nvfp4-noquant").uses_had_size
    assert not get_provider("torch-nvfp4-noquant").uses_had_size
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        get_provider("nope")


def test_on_cpu_only_bf16_runs_and_the_rest_say_why():
    reasons = availability(["torch-bf16", *GPU_PROVIDERS], torch.device("cpu"))
    assert reasons["torch-bf16"] is None
    for name in GPU_PROVIDERS:
        assert "needs a CUDA GPU" in reasons[name] and "ran on cpu" in reasons[name]


@pytest.mark.parametrize(
    "capability, torch_nvfp4_ok, triton_ok, cuda_ok",
    [
        ((9, 0), False, True, True),
        ((8, 9), False, True, True),
        ((8, 0), False, True, False),
        ((7, 5), False, False, False),
        ((11, 0), True, True, True),
    ],
)
def test_capability_gates(monkeypatch, capability, torch_nvfp4_ok, triton_ok, cuda_ok):
    from nvfp4bench.providers import cuda_nvfp4, torch_nvfp4, triton_nvfp4

    monkeypatch.setattr(requirements, "compute_capability", lambda device: capability)
    device = torch.device("cuda")
    assert (torch_nvfp4._capability_check(device) is None) == torch_nvfp4_ok
    assert (triton_nvfp4._capability_check(device) is None) == triton_ok
    # The CUDA providers' own gate (E4M3 conversions need 8.9), ahead of any compilation.
    assert (cuda_nvfp4._capability_check(device) is None) == cuda_ok
    if not torch_nvfp4_ok:
        wanted = f"needs compute capability >= 10.0; this GPU is {capability[0]}.{capability[1]}"
        assert torch_nvfp4._capability_check(device) == wanted


@pytest.mark.parametrize("name", TRITON_PROVIDERS)
def test_triton_provider_matches_its_reference_in_the_interpreter(name):
    """The whole provider (quantize, GEMM, reference) on CPU tensors in Triton's interpreter."""
    if torch.cuda.is_available():
        pytest.skip("the GPU run of this is tests/test_triton_kernels.py::test_providers_on_gpu")
    generator = torch.Generator().manual_seed(torch.seed() % 2**31)
    a = torch.distributions.StudentT(3.0).sample((4, 256)).to(torch.bfloat16)
    b = torch.randn(48, 256, generator=generator).to(torch.bfloat16)
    prepared = get_provider(name).prepare(a, b, 32)
    out = prepared.run()
    rows, cols = torch.arange(4), torch.arange(0, 48, 5)
    error = relative_error(out[rows][:, cols], prepared.reference(rows, cols))
    assert error <= 4e-3  # bf16 output rounding only
    # and the reference is of the quantized operands, not of the bf16 ones
    exact = a.double() @ b.double().T
    assert relative_error(out.double(), exact) > 0.05


@pytest.mark.parametrize(
    "N, K, had_size, message",
    [
        (256, 240, None, "K=240 is not a multiple of 64"),
        (256, 512, 128, None),
        (256, 320, 128, "K=320 is not a multiple of had_size=128"),
        (272, 512, 16, "N=272 is not a multiple of 32"),
    ],
)
def test_cutlass_provider_refuses_shapes_its_kernels_do_not_check(N, K, had_size, message):
    """Unsupported shapes are refused (a skipped row) before any vLLM call is made."""
    a = torch.randn(4, K).to(torch.bfloat16)
    b = torch.randn(N, K).to(torch.bfloat16)
    for name in ("nvfp4", "nvfp4-noquant"):
        if message is None:
            # A valid shape gets past the checks to the first vLLM import, absent here.
            with pytest.raises(ImportError):
                get_provider(name).prepare(a, b, had_size)
        else:
            with pytest.raises(ValueError, match=message):
                get_provider(name).prepare(a, b, had_size)


def test_availability_is_the_first_reason_a_check_gives():
    calls = []

    def passes(device):
        calls.append("passes")

    def broken_import(device):
        raise ImportError("no module named 'fp4lib'\nmore detail")

    check = requirements.first_reason(
        lambda device: calls.append("cheap"), requirements.loads("fp4lib not importable", passes)
    )
    assert check(torch.device("cpu")) is None and calls == ["cheap", "passes"]
    check = requirements.first_reason(
        requirements.loads("fp4lib not importable", broken_import), lambda device: 1 / 0
    )
    reason = check(torch.device("cpu"))
    assert reason == "fp4lib not importable: ImportError: no module named 'fp4lib'"


def test_a_provider_is_one_module_plus_one_registry_line(monkeypatch):
    """A throwaway provider in a module of its own: with that module in the registry's list, the
    config accepts it and the sweep plans its rows and measures them under the contract."""
    module = types.ModuleType("fp32_provider")

    def prepare(a, b, had_size):
        a32, b32 = a.float(), b.float()
        reference = lambda rows, cols: a[rows].double() @ b[cols].double().T  # noqa: E731
        return Prepared(run=lambda: F.linear(a32, b32), reference=reference, tolerance=1e-5)

    module.PROVIDERS = [
        Provider("test-fp32", "F.linear in fp32", False, lambda device: None, prepare)
    ]
    with pytest.raises(config.ConfigError, match="unknown provider 'test-fp32'"):
        config.check_providers({"providers": ["test-fp32"], "formats": ["nvfp4"]})

    monkeypatch.setattr(providers, "_FAMILIES", [*providers._FAMILIES, module])  # the line
    monkeypatch.setattr(providers, "PROVIDERS", providers._load())
    config.check_providers({"providers": ["torch-bf16", "test-fp32"], "formats": ["nvfp4"]})
    shape = settings(providers=("test-fp32",))
    keys = sweep.plan(shape)
    assert [(key.provider, key.had_size, key.M) for key in keys] == [
        ("test-fp32", None, M) for M in shape.batch_sizes
    ]
    device = torch.device("cpu")
    weight = torch.randn(shape.N, shape.K).to(torch.bfloat16)
    row, replace_worker = sweep._measure(
        shape, get_provider("test-fp32"), keys[-1], weight, device, {}
    )
    assert row["status"] == "ok" and not replace_worker, row["reason"]
    assert row["check_rel_err"] < 1e-5 and row["ms_median"] > 0
