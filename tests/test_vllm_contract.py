"""The vLLM providers (``nvfp4``, ``nvfp4-noquant``) against a stand-in with vLLM's contract; the
contract test below also runs the MXFP4 pair (``test_vllm_mxfp4_contract.py`` has the rest).

No GPU that runs vLLM's CUTLASS FP4 GEMM has been available, so the provider code runs unchanged
on the CPU against ``blackwell_standins`` (vLLM's signatures, dtypes, padding and output shapes at
the commits named there, computed with the reference numerics), through the sweep's own
``prepare()``, ``run()`` and float64 check. Each way of calling it wrongly (dtype, layout,
argument order) is made once below, and the check must catch it.
"""

from __future__ import annotations

import sys

import pytest
import torch
from blackwell_standins import install_vllm, registered_ops
from contract_helpers import measure, pair_reason

from nvfp4bench.numerics import HAD_SIZES, MX_HAD_SIZES

# M and N not multiples of 128 (padded scale rows), M = 1 (decode); N a multiple of 32 (CUTLASS),
# K / 32 a multiple of 4 (MXFP4's swizzled scales).
SHAPES = [(1, 96, 256), (130, 224, 512)]


@pytest.fixture
def vllm(monkeypatch):
    return install_vllm(monkeypatch)


@pytest.mark.parametrize("M, N, K", SHAPES)
@pytest.mark.parametrize(
    "name, had_size",
    [("nvfp4", had) for had in HAD_SIZES]
    + [("nvfp4-noquant", None)]
    + [("mxfp4", had) for had in MX_HAD_SIZES]
    + [("mxfp4-noquant", None)],
)
def test_provider_meets_the_contract(vllm, name, had_size, M, N, K):
    row = measure(name, M, N, K, had_size)
    assert row["status"] == "ok", row["reason"]
    assert row["check_rel_err"] <= 1e-2


def _gemm(change):
    return "custom_ops", "cutlass_scaled_fp4_mm", change


MUTATIONS = {
    "dtype: activation passed as float32": (
        "custom_ops", "fusedQuantizeNv", lambda real: lambda a, h, gs: real(a.float(), h, gs),
    ),
    "dtype: scales passed as uint8": _gemm(
        lambda real: lambda a, b, sa, sb, alpha, dt: real(
            a, b, sa.view(torch.uint8), sb.view(torch.uint8), alpha, dt
        )
    ),
    "layout: scales not swizzled": (
        "qutlass_utils", "to_blocked", lambda real: lambda x, backend="triton": x.flatten(),
    ),
    "layout: weight not contiguous": _gemm(
        lambda real: lambda a, b, sa, sb, alpha, dt: real(
            a, b.t().contiguous().t(), sa, sb, alpha, dt
        )
    ),
    "order: activation and weight swapped": _gemm(
        lambda real: lambda a, b, sa, sb, alpha, dt: real(b, a, sb, sa, alpha, dt)
    ),
    "order: scale_a and scale_b swapped": _gemm(
        lambda real: lambda a, b, sa, sb, alpha, dt: real(a, b, sb, sa, alpha, dt)
    ),
    "order: rotation and activation swapped": (
        "custom_ops", "fusedQuantizeNv", lambda real: lambda a, h, gs: real(h, a, gs),
    ),
}  # fmt: skip


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_wrong_call_fails_the_contract(vllm, monkeypatch, mutation):
    """Breaks one thing about how the provider calls vLLM; the row must not be ok. M = 5 and
    N = 96 pad to the same 128 scale rows, so swapped scales pass every shape check and only the
    float64 check can see them."""
    shape = (5, 96, 256)
    assert measure("nvfp4", *shape, 16)["status"] == "ok"
    module, name, change = MUTATIONS[mutation]
    target = getattr(vllm, module)
    monkeypatch.setattr(target, name, change(getattr(target, name)))
    row = measure("nvfp4", *shape, 16)
    assert row["status"] != "ok", f"{mutation} went unnoticed"


# ------------------------------------------------------------------------------------------------
# availability
# ------------------------------------------------------------------------------------------------


def reason(monkeypatch, value):
    return pair_reason(monkeypatch, value, "nvfp4")


def test_without_vllm_the_rows_say_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    assert reason(monkeypatch, (10, 0)).startswith("vLLM not importable: ")


def test_a_build_without_the_ops_is_skipped_with_their_names(vllm, monkeypatch):
    """vLLM imports fine without its kernels' ops (its Python wrappers are plain Python)."""
    text = reason(monkeypatch, (10, 0))
    assert text.startswith("this vLLM build registers no torch.ops._C.cutlass_scaled_fp4_mm")
    with registered_ops(qutlass_ops=()):  # built for CUDA < 12.8: no qutlass
        text = reason(monkeypatch, (10, 0))
    assert text == (
        "this vLLM build registers no torch.ops._qutlass_C.fusedQuantizeNv or fusedQuantizeNvAbsMax"
    )


@pytest.mark.parametrize("quantize_op", ["fusedQuantizeNv", "fusedQuantizeNvAbsMax"])
@pytest.mark.parametrize(
    "gpu, runs", [((9, 0), False), ((10, 0), True), ((10, 3), True), ((11, 0), True),
                  ((12, 0), True), ((12, 1), True)],
)  # fmt: skip
def test_the_capability_gate_is_vllms_own(vllm, monkeypatch, quantize_op, gpu, runs):
    with registered_ops(qutlass_ops=(quantize_op,)):
        text = reason(monkeypatch, gpu)
    if runs:
        assert text is None
        # from Blackwell on vLLM's answer decides: a vLLM that says no is believed
        monkeypatch.setattr(vllm.custom_ops, "cutlass_scaled_mm_supports_fp4", lambda sm: False)
        with registered_ops(qutlass_ops=(quantize_op,)):
            text = reason(monkeypatch, gpu)
        assert text.startswith(f"vLLM's cutlass_scaled_mm_supports_fp4({gpu[0]}{gpu[1]}) is False")
    else:
        assert text == f"needs compute capability >= 10.0; this GPU is {gpu[0]}.{gpu[1]}"


def test_on_hopper_without_vllm_the_reason_names_the_gpu(monkeypatch):
    """The GPU, not the missing vLLM, is what a Hopper user must change."""
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert reason(monkeypatch, (9, 0)) == "needs compute capability >= 10.0; this GPU is 9.0"
