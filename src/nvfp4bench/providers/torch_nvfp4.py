"""torch's own NVFP4 GEMM: ``torch._scaled_mm`` on Blackwell, no vLLM needed.

The operands are ``float4_e2m1fn_x2`` (two E2M1 codes a byte, element 2i in the low nibble, as
ours) with float8_e4m3fn scales per 16 values in the swizzled cuBLAS block-scaling layout; torch
hands them to cuBLAS's block-scaled FP4 GEMM, which needs compute capability >= 10.0, CUDA >= 12.8
and torch >= 2.8 (the first with ``float4_e2m1fn_x2``). The call is the one of PyTorch's own test
of that path (``test/test_scaled_matmul_cuda.py``, ``test_blockwise_mxfp8_nvfp4_mxfp4_numerics``):
``a`` row-major [M, K/2], ``b`` the transpose of a row-major [N, K/2], each scale tensor flat and
contiguous, ``out_dtype=torch.bfloat16``. Our Hadamard + NVFP4 quantizer (the Triton kernel) makes
the operands. Global scales are 1, as the seed's vLLM benchmark uses them, so none is passed
(``torch._scaled_mm`` applies ``scale_result`` to float8 outputs only).

* ``torch-nvfp4``: rotate + quantize the activation inside the timed call, then the GEMM.
  had_size None means no rotation (plain NVFP4).
* ``torch-nvfp4-noquant``: the GEMM alone on a pre-quantized activation (had 16 when unset).

``tests/test_torch_nvfp4_contract.py`` runs this code against a stand-in with torch's operand
contract, since no GPU that runs it has been available.
"""

from __future__ import annotations

import torch

from .base import NOQUANT_HAD_SIZE, Prepared, fp4_pair, fp4_product_reference
from .requirements import needs_cuda_capability, one_line

# cuBLAS's block-scaled FP4 GEMM came with CUDA 12.8.
MIN_CUDA = (12, 8)

_capability_check = needs_cuda_capability((10, 0))


def _unavailable_reason(device: torch.device) -> str | None:
    reason = _capability_check(device)
    if reason:
        return reason
    if not hasattr(torch, "float4_e2m1fn_x2"):
        return f"needs torch >= 2.8 (torch.float4_e2m1fn_x2); this is torch {torch.__version__}"
    cuda = tuple(int(part) for part in (torch.version.cuda or "0.0").split(".")[:2])
    if cuda < MIN_CUDA:
        return (
            f"needs torch built with CUDA >= 12.8 (cuBLAS FP4); this one has {torch.version.cuda}"
        )
    try:
        from ..kernels import triton_dot_scaled  # noqa: F401  (its quantizer makes the operands)
    except Exception as error:  # ImportError, or a triton that fails to load
        return one_line(f"triton not importable (it quantizes): {type(error).__name__}: {error}")
    return None


def _make_prepare(quantize_activation: bool):
    def prepare(a: torch.Tensor, b: torch.Tensor, had_size: int | None) -> Prepared:
        from ..kernels.triton_dot_scaled import quantize_operand
        from ..kernels.triton_nvfp4 import quantize_nvfp4, tuned_quant_config
        from ..numerics import check_shape

        M, K = a.shape
        N = b.shape[0]
        r = had_size if quantize_activation else (had_size or NOQUANT_HAD_SIZE)
        check_shape(K, r, swizzle=True)
        if N % 16:
            raise ValueError(f"N={N} is not a multiple of 16 (torch._scaled_mm)")
        gs = torch.ones(1, dtype=torch.float32, device=a.device)
        a16 = a.to(torch.bfloat16).contiguous()
        b_packed, b_scales, b_blocked = quantize_operand(b.to(torch.bfloat16), r, gs)
        a_packed, a_scales, a_blocked = quantize_operand(a16, r, gs)
        quant_config = tuned_quant_config(a16, r) if quantize_activation else {}
        q_buf = (torch.empty_like(a_packed), a_blocked.clone())  # padding stays zero
        weight = b_packed.view(torch.float4_e2m1fn_x2).t()
        weight_scales = b_blocked.view(-1)

        def gemm(packed, blocked):
            return torch._scaled_mm(
                packed.view(torch.float4_e2m1fn_x2),
                weight,
                blocked.view(-1),
                weight_scales,
                out_dtype=torch.bfloat16,
            )

        if quantize_activation:

            def run():
                quantized = quantize_nvfp4(
                    a16, r, gs, linear=False, swizzled=True, out=q_buf, **quant_config
                )
                return gemm(*quantized)
        else:

            def run():
                return gemm(a_packed, a_blocked)

        reference = fp4_product_reference(a_packed, a_scales, b_packed, b_scales, 1.0)
        # cuBLAS accumulates in fp32 and rounds to bf16 once.
        return Prepared(
            run=run, reference=reference, tolerance=1e-2, kernel="torch._scaled_mm (cuBLAS)"
        )

    return prepare


PROVIDERS = fp4_pair(
    "torch-nvfp4",
    format="nvfp4",
    description="Triton Hadamard + NVFP4 quantize, then torch._scaled_mm NVFP4 (cuBLAS)",
    noquant_description="torch._scaled_mm NVFP4 (cuBLAS) on a pre-quantized activation",
    unavailable_reason=_unavailable_reason,
    make_prepare=_make_prepare,
)
