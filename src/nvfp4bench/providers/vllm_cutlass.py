"""vLLM's Blackwell path: qutlass `fusedQuantizeNv` + vLLM's CUTLASS NVFP4 GEMM.

These are the exact calls of vLLM's benchmarks/kernels/bench_nvfp4_qutlass.py. They run where
vLLM itself says its CUTLASS FP4 GEMM does (``cutlass_scaled_mm_supports_fp4``: compute capability
>= 10.0 and CUDA >= 12.8) and the vLLM build registers the ops they call; anywhere else the rows
are skipped with the reason. Nothing here is emulated. ``tests/test_vllm_contract.py`` runs this
code against a stand-in with vLLM's signatures, since no GPU that runs it has been available.
"""

from __future__ import annotations

import torch

from . import requirements
from .base import NOQUANT_HAD_SIZE, Prepared, fp4_pair, fp4_product_reference

# The registered ops behind the calls below, by torch.ops namespace. vLLM's _C has the GEMM and
# its capability query; qutlass's ops are in _qutlass_C, which vLLM loads only if it was built
# (CUDA >= 12.8), while its Python wrappers import either way. qutlass renamed fusedQuantizeNv to
# fusedQuantizeNvAbsMax; vLLM's wrapper calls whichever its version has.
_C_OPS = ("cutlass_scaled_fp4_mm", "cutlass_scaled_mm_supports_fp4")
_QUTLASS_QUANTIZE_OPS = ("fusedQuantizeNv", "fusedQuantizeNvAbsMax")


def _missing_ops() -> list[str]:
    missing = [f"torch.ops._C.{name}" for name in _C_OPS if not hasattr(torch.ops._C, name)]
    if not any(hasattr(torch.ops._qutlass_C, name) for name in _QUTLASS_QUANTIZE_OPS):
        missing.append("torch.ops._qutlass_C." + " or ".join(_QUTLASS_QUANTIZE_OPS))
    return missing


def _load_entry_points() -> None:
    from vllm._custom_ops import fusedQuantizeNv  # noqa: F401
    from vllm.model_executor.layers.quantization.qutlass_utils import to_blocked  # noqa: F401


def _cutlass_fp4_gemm(device: torch.device) -> str | None:
    """vLLM's own answer: whether its CUTLASS FP4 GEMM was built for this GPU."""
    from vllm import _custom_ops as ops

    major, minor = requirements.compute_capability(device)
    sm = major * 10 + minor
    if not ops.cutlass_scaled_mm_supports_fp4(sm):
        return (
            f"vLLM's cutlass_scaled_mm_supports_fp4({sm}) is False: no CUTLASS FP4 GEMM for "
            f"compute capability {major}.{minor} in this build"
        )
    return None


_unavailable_reason = requirements.first_reason(
    # CUTLASS's FP4 GEMM exists from Blackwell on; vLLM's own answer decides there
    requirements.vllm_build(
        "compute capability >= 10.0",
        lambda capability: capability >= (10, 0),
        _load_entry_points,
        _missing_ops,
    ),
    _cutlass_fp4_gemm,
)


def _quantize(x: torch.Tensor, hadamard: torch.Tensor, global_scale: torch.Tensor):
    """fusedQuantizeNv + swizzle, as bench_nvfp4_qutlass.py does: (packed, linear and swizzled
    scales)."""
    from vllm._custom_ops import fusedQuantizeNv
    from vllm.model_executor.layers.quantization.qutlass_utils import to_blocked

    packed, scales = fusedQuantizeNv(x, hadamard, global_scale)
    blocked = to_blocked(scales, backend="triton").view(-1, x.shape[-1] // 16)
    return packed, scales, blocked


def _make_prepare(quantize_activation: bool):
    def prepare(a: torch.Tensor, b: torch.Tensor, had_size: int | None) -> Prepared:
        from ..numerics import check_shape, hadamard_matrix

        M, K = a.shape
        N = b.shape[0]
        # Checked before any vLLM call: the kernels check neither (docs/nvfp4-spec.md).
        check_shape(K, had_size or NOQUANT_HAD_SIZE, swizzle=True)
        if N % 32:
            raise ValueError(f"N={N} is not a multiple of 32 (CUTLASS FP4 GEMM)")
        from vllm import _custom_ops as ops

        hadamard = hadamard_matrix(had_size or NOQUANT_HAD_SIZE, torch.bfloat16, a.device)
        global_scale = torch.tensor([1.0], device=a.device)
        alpha = torch.tensor([1.0], device=a.device)
        b_packed, b_scales, b_blocked = _quantize(b, hadamard, global_scale)
        a_packed, a_scales, a_blocked = _quantize(a, hadamard, global_scale)

        def gemm(a_packed, a_blocked):
            return ops.cutlass_scaled_fp4_mm(
                a_packed, b_packed, a_blocked, b_blocked, alpha, torch.bfloat16
            )

        if quantize_activation:

            def run():
                packed, _, blocked = _quantize(a, hadamard, global_scale)
                return gemm(packed, blocked)
        else:

            def run():
                return gemm(a_packed, a_blocked)

        # fusedQuantizeNv pads its scales to 128 rows x a multiple of 4 columns.
        reference = fp4_product_reference(
            a_packed, a_scales[:M, : K // 16], b_packed, b_scales[:N, : K // 16], float(alpha)
        )
        # qutlass asserts bit equality with bf16(a_dq @ b_dq^T); allow bf16 output rounding only.
        return Prepared(run=run, reference=reference, tolerance=1e-2)

    return prepare


PROVIDERS = fp4_pair(
    "nvfp4",
    format="nvfp4",
    description="qutlass fusedQuantizeNv (Hadamard + NVFP4 quantize) + CUTLASS FP4 GEMM, vLLM",
    noquant_description="CUTLASS FP4 GEMM on a pre-quantized activation, vLLM",
    unavailable_reason=_unavailable_reason,
    make_prepare=_make_prepare,
)
