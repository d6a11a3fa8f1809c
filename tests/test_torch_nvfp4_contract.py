"""The torch-nvfp4 providers against a stand-in with torch's NVFP4 ``_scaled_mm`` contract.

``torch._scaled_mm`` refuses NVFP4 operands on the CPU and no GPU of compute capability >= 10.0 has
been available, so the provider code runs unchanged on the CPU (its Triton quantizer in Triton's
interpreter) against ``blackwell_standins._scaled_mm`` (PyTorch's operand contract at the commits
named there, computed with the reference numerics), through the sweep's own ``prepare()``,
``run()`` and float64 check. Each way of calling it wrongly is made once, and must be caught.
"""

from __future__ import annotations

import pytest
import torch
from blackwell_standins import _scaled_mm
from contract_helpers import capability, contract_cases, measure

from nvfp4bench import numerics
from nvfp4bench.providers import get_provider

pytest.importorskip("triton")
if torch.cuda.is_available():
    pytest.skip("the stand-in replaces torch._scaled_mm on the CPU only", allow_module_level=True)

# N is a multiple of 16 (torch._scaled_mm).
CASES = contract_cases("torch-nvfp4", (1, 80, 256), (130, 208, 512))


@pytest.fixture
def scaled_mm(monkeypatch):
    monkeypatch.setattr(torch, "_scaled_mm", _scaled_mm)


def test_torch_refuses_nvfp4_on_the_cpu():
    """Why the stand-in exists: the real call has no CPU implementation."""
    a = torch.zeros(128, 32, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)
    scales = torch.zeros(128 * 4, dtype=torch.float8_e4m3fn)
    with pytest.raises((RuntimeError, ValueError, NotImplementedError)):
        torch._scaled_mm(a, a.t(), scales, scales, out_dtype=torch.bfloat16)


@CASES
def test_provider_meets_the_contract(scaled_mm, name, had_size, shape):
    M, N, K = shape
    row = measure(name, M, N, K, had_size)
    assert row["status"] == "ok", row["reason"]
    assert row["check_rel_err"] <= 1e-2
    assert row["kernel"] == "torch._scaled_mm (cuBLAS)"


def _linear(scales: torch.Tensor, k: int) -> torch.Tensor:
    """Swizzled scales back in row order, padding included: the layout the call must not get."""
    cols = -(-(k // 16) // 4) * 4
    return numerics.from_blocked(scales, scales.numel() // cols, cols).flatten()


def _row_major(operand: torch.Tensor) -> torch.Tensor:
    """The same [K/2, N] values stored row by row (torch copies no float4 tensor on the CPU)."""
    return operand.view(torch.uint8).contiguous().view(torch.float4_e2m1fn_x2)


MUTATIONS = {
    "dtype: operands passed as uint8": lambda a, b, sa, sb, **kw: (
        a.view(torch.uint8),
        b.view(torch.uint8),
        sa,
        sb,
    ),
    "dtype: scales passed as uint8": lambda a, b, sa, sb, **kw: (
        a,
        b,
        sa.view(torch.uint8),
        sb.view(torch.uint8),
    ),
    "layout: scales not swizzled": lambda a, b, sa, sb, **kw: (
        a,
        b,
        _linear(sa, a.size(1) * 2),
        _linear(sb, a.size(1) * 2),
    ),
    "layout: weight row-major": lambda a, b, sa, sb, **kw: (a, _row_major(b), sa, sb),
    "order: activation and weight swapped": lambda a, b, sa, sb, **kw: (b.t(), a.t(), sb, sa),
    "order: scale_a and scale_b swapped": lambda a, b, sa, sb, **kw: (a, b, sb, sa),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_wrong_call_fails_the_contract(scaled_mm, monkeypatch, mutation):
    """Breaks one thing about the provider's torch._scaled_mm call; the row must not be ok. M = 5
    and N = 80 pad to the same 128 scale rows, so swapped scales pass every shape check and only
    the float64 check can see them."""
    shape = (5, 80, 256)
    assert measure("torch-nvfp4-noquant", *shape, None)["status"] == "ok"
    change = MUTATIONS[mutation]
    monkeypatch.setattr(
        torch, "_scaled_mm", lambda *args, **kw: _scaled_mm(*change(*args, **kw), **kw)
    )
    row = measure("torch-nvfp4-noquant", *shape, None)
    assert row["status"] != "ok", f"{mutation} went unnoticed"


# ------------------------------------------------------------------------------------------------
# availability
# ------------------------------------------------------------------------------------------------

CUDA = torch.device("cuda")


def reason(monkeypatch, gpu):
    capability(monkeypatch, gpu)
    (text,) = {
        get_provider(n).unavailable_reason(CUDA) for n in ("torch-nvfp4", "torch-nvfp4-noquant")
    }
    return text


@pytest.mark.parametrize("gpu, runs", [((9, 0), False), ((10, 0), True), ((12, 0), True)])
def test_needs_compute_capability_10(monkeypatch, gpu, runs):
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    text = reason(monkeypatch, gpu)
    assert (text is None) == runs
    if not runs:
        assert text == f"needs compute capability >= 10.0; this GPU is {gpu[0]}.{gpu[1]}"


def test_needs_cuda_12_8_and_torch_2_8(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    assert reason(monkeypatch, (10, 0)) == (
        "needs torch built with CUDA >= 12.8 (cuBLAS FP4); this one has 12.6"
    )
    monkeypatch.delattr(torch, "float4_e2m1fn_x2")
    assert reason(monkeypatch, (10, 0)).startswith("needs torch >= 2.8 (torch.float4_e2m1fn_x2)")
