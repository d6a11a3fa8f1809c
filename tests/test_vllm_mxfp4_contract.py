"""The vLLM MXFP4 providers (``mxfp4``, ``mxfp4-noquant``) against a stand-in with vLLM's and
qutlass's contract (``blackwell_standins``: signatures, float8_e8m0fnu scales, padding, qutlass's
abs_max rule), through the sweep's own ``prepare()``, ``run()`` and float64 check, as
``test_vllm_contract.py`` does for NVFP4. Each wrong call is made once, and the check must see it.
"""

from __future__ import annotations

import pytest
from blackwell_standins import install_vllm, registered_ops
from contract_helpers import measure, pair_reason


@pytest.fixture
def vllm(monkeypatch):
    return install_vllm(monkeypatch)


# The contract test of both pairs is in test_vllm_contract.py.
def test_had_16_is_skipped_with_the_reason(vllm):
    row = measure("mxfp4", 1, 96, 256, 16)
    assert row["status"] == "skipped"
    assert row["reason"].startswith("had_size=16 is not an MXFP4 rotation")


def _gemm(change):
    return "custom_ops", "matmul_mxf4_bf16_tn", change


MUTATIONS = {
    "layout: scales not swizzled": (
        "qutlass_utils", "to_blocked", lambda real: lambda x, backend="triton": x.flatten(),
    ),
    "order: activation and weight swapped": _gemm(
        lambda real: lambda a, b, sa, sb, alpha: real(b, a, sb, sa, alpha)
    ),
    "order: a_sf and b_sf swapped": _gemm(
        lambda real: lambda a, b, sa, sb, alpha: real(a, b, sb, sa, alpha)
    ),
    "order: rotation and activation swapped": (
        "custom_ops", "fusedQuantizeMx",
        lambda real: lambda a, h, method="quest": real(h, a, method=method),
    ),
}  # fmt: skip


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_wrong_call_fails_the_contract(vllm, monkeypatch, mutation):
    """M = 5 and N = 96 pad to the same 128 scale rows, so swapped scales pass every shape check
    and only the float64 check can see them."""
    shape = (5, 96, 256)
    assert measure("mxfp4", *shape, 32)["status"] == "ok"
    module, name, change = MUTATIONS[mutation]
    target = getattr(vllm, module)
    monkeypatch.setattr(target, name, change(getattr(target, name)))
    assert measure("mxfp4", *shape, 32)["status"] != "ok", f"{mutation} went unnoticed"


def reason(monkeypatch, value):
    return pair_reason(monkeypatch, value, "mxfp4")


def test_a_build_without_the_ops_is_skipped_with_their_names(vllm, monkeypatch):
    with registered_ops(qutlass_ops=("fusedQuantizeMxAbsMax",)):
        text = reason(monkeypatch, (10, 0))
    assert text == "this vLLM build registers no torch.ops._qutlass_C.matmul_mxf4_bf16_tn"


@pytest.mark.parametrize(
    "gpu, runs",
    [((8, 0), False), ((9, 0), False), ((10, 0), True), ((10, 3), True), ((11, 0), False),
     ((12, 0), True)],
)  # fmt: skip
def test_the_capability_gate_is_blackwell(vllm, monkeypatch, gpu, runs):
    with registered_ops(qutlass_ops=("fusedQuantizeMxAbsMax", "matmul_mxf4_bf16_tn")):
        text = reason(monkeypatch, gpu)
    if runs:
        assert text is None
    else:
        assert text == (
            f"needs compute capability 10.x or 12.x (qutlass's MXFP4 GEMM); this GPU is "
            f"{gpu[0]}.{gpu[1]}"
        )
