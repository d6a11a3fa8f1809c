"""vLLM's MXFP4 path: qutlass `fusedQuantizeMx` (abs_max) + qutlass's CUTLASS MXFP4 GEMM.

These are the exact calls of vLLM's benchmarks/kernels/bench_mxfp4_qutlass.py: the weight and
the activation through ``fusedQuantizeMx(x, H, method="abs_max")`` and
``to_blocked(scales, backend="triton")``, then ``matmul_mxf4_bf16_tn(a, b, a_sf, b_sf, alpha)``
with alpha = 1. qutlass builds this GEMM for Blackwell only (compute capability 10.x and 12.x);
elsewhere, or without vLLM or its qutlass ops, the rows are skipped with the reason. Nothing here
is emulated; ``tests/test_vllm_contract.py`` runs it against a stand-in with vLLM's signatures.

qutlass's abs_max scale differs from the OCP rule of ``numerics.quantize_mxfp4``: it stores
2**floor(log2(amax)) and encodes 3 * y / scale, so its dequantized operands are 3 x the rotated
input and, with alpha = 1 as vLLM's benchmark passes it, the output is 9 x the product. The
timing does not depend on it; the check compares with the float64 product of the provider's own
dequantized operands, whatever their scale (docs/nvfp4-spec.md, "MXFP4").
"""

from __future__ import annotations

import torch

from . import requirements
from .base import MX_NOQUANT_HAD_SIZE, Prepared, fp4_pair, fp4_product_reference

# The ops behind the calls below, all in qutlass's torch.ops namespace, which vLLM registers only
# when it was built with CUDA >= 12.8.
_QUTLASS_OPS = ("fusedQuantizeMxAbsMax", "matmul_mxf4_bf16_tn")
# qutlass compiles its MXFP4 GEMM for sm_100 and sm_120.
BLACKWELL_MAJORS = (10, 12)


def _load_entry_points() -> None:
    from vllm._custom_ops import fusedQuantizeMx, matmul_mxf4_bf16_tn  # noqa: F401
    from vllm.model_executor.layers.quantization.qutlass_utils import to_blocked  # noqa: F401


def _missing_ops() -> list[str]:
    return [
        f"torch.ops._qutlass_C.{name}"
        for name in _QUTLASS_OPS
        if not hasattr(torch.ops._qutlass_C, name)
    ]


_unavailable_reason = requirements.vllm_build(
    "compute capability 10.x or 12.x (qutlass's MXFP4 GEMM)",
    lambda capability: capability[0] in BLACKWELL_MAJORS,
    _load_entry_points,
    _missing_ops,
)


def _quantize(x: torch.Tensor, hadamard: torch.Tensor):
    """fusedQuantizeMx + swizzle, as bench_mxfp4_qutlass.py does: (packed, padded linear scales,
    swizzled scales)."""
    from vllm._custom_ops import fusedQuantizeMx
    from vllm.model_executor.layers.quantization.qutlass_utils import to_blocked

    packed, scales = fusedQuantizeMx(x, hadamard, method="abs_max")
    return packed, scales, to_blocked(scales, backend="triton")


def _make_prepare(quantize_activation: bool):
    def prepare(a: torch.Tensor, b: torch.Tensor, had_size: int | None) -> Prepared:
        from ..numerics import check_shape, hadamard_matrix

        M, K = a.shape
        N = b.shape[0]
        r = had_size or MX_NOQUANT_HAD_SIZE
        # Checked before any vLLM call (had 16, a K the scale layout cannot hold): one-line skips.
        check_shape(K, r, swizzle=True, fmt="mxfp4")
        from vllm._custom_ops import matmul_mxf4_bf16_tn

        hadamard = hadamard_matrix(r, torch.bfloat16, a.device)
        alpha = torch.tensor([1.0], device=a.device)
        b_packed, b_scales, b_blocked = _quantize(b, hadamard)
        a_packed, a_scales, a_blocked = _quantize(a, hadamard)

        if quantize_activation:

            def run():
                packed, _, blocked = _quantize(a, hadamard)
                return matmul_mxf4_bf16_tn(packed, b_packed, blocked, b_blocked, alpha)
        else:

            def run():
                return matmul_mxf4_bf16_tn(a_packed, b_packed, a_blocked, b_blocked, alpha)

        # fusedQuantizeMx pads its scales to 128 rows (K/32 is a multiple of 4 here).
        reference = fp4_product_reference(
            a_packed, a_scales[:M], b_packed, b_scales[:N], float(alpha), "mxfp4"
        )
        # qutlass asserts bit equality with bf16(a_dq @ b_dq^T); allow bf16 output rounding only.
        return Prepared(run=run, reference=reference, tolerance=1e-2)

    return prepare


PROVIDERS = fp4_pair(
    "mxfp4",
    format="mxfp4",
    description="qutlass fusedQuantizeMx (Hadamard + MXFP4 quantize, abs_max) + qutlass CUTLASS "
    "MXFP4 GEMM, vLLM",
    noquant_description="qutlass CUTLASS MXFP4 GEMM on a pre-quantized activation, vLLM",
    unavailable_reason=_unavailable_reason,
    make_prepare=_make_prepare,
)
