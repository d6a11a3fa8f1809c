"""NVFP4 + Hadamard in Triton, on any GPU of compute capability 8.0 or later.

Kernels: ``nvfp4bench.kernels.triton_nvfp4`` (fused rotate + quantize; W4A4 GEMM decoding E2M1 x
E4M3 to fp16 for the tensor cores, a GEMV path and split-K for small M). On compute capability
10.x the GEMM is ``nvfp4bench.kernels.triton_dot_scaled`` instead (``tl.dot_scaled`` on the
block-scaled FP4 tensor cores), unless its check on a small problem fails: then the fp16 kernels
run and the row's ``kernel`` says why (the ``kernel`` column names the GEMM that ran).

Global scales are 1 (alpha = 1), as vLLM's bench_nvfp4_qutlass.py uses them. The weight is quantized
once in prepare with the same Hadamard size; the GEMM and quantize configurations are tuned once
per shape in prepare (small candidate spaces, like triton.autotune) so the timed call does no
tuning.

* ``nvfp4-triton``: rotate + quantize the activation inside the timed call, then the GEMM.
  had_size None means no rotation (plain NVFP4).
* ``nvfp4-triton-noquant``: the GEMM alone on a pre-quantized activation; with had_size None
  both operands are quantized with the 16-point rotation (as vllm_cutlass's noquant provider).
"""

from __future__ import annotations

import torch

from . import requirements
from .base import NOQUANT_HAD_SIZE, Prepared, fp4_pair, nvfp4_prepared
from .requirements import first_reason, loads, needs_cuda_capability

# Blackwell data-center GPUs: the compute capability whose block-scaled tensor-core MMA Triton's
# tl.dot_scaled targets (its tutorial 10-block-scaled-matmul.py gates on the same).
BLOCK_SCALED_MAJOR = 10

_capability_check = needs_cuda_capability((8, 0))


def _import_kernels(device: torch.device) -> None:
    import triton  # noqa: F401

    from ..kernels import triton_nvfp4  # noqa: F401


_unavailable_reason = first_reason(
    _capability_check, loads("triton not importable", _import_kernels)
)


def _block_scaled_gemm(device: torch.device, K: int) -> tuple[bool, str]:
    """(whether the tl.dot_scaled GEMM runs here, a note for the kernel column if it does not
    where it was meant to)."""
    capability = requirements.compute_capability(device)
    if capability is None or capability[0] != BLOCK_SCALED_MAJOR:
        return False, ""
    if K % 64:
        return False, f" (not dot_scaled: K={K} is not a multiple of 64)"
    from ..kernels.triton_dot_scaled import unsupported_reason

    reason = unsupported_reason(device)
    return reason is None, f" (not dot_scaled: {reason})" if reason else ""


def _make_prepare(quantize_activation: bool):
    def prepare(a: torch.Tensor, b: torch.Tensor, had_size: int | None) -> Prepared:
        from ..kernels import triton_dot_scaled
        from ..kernels.triton_nvfp4 import (
            nvfp4_gemm,
            quantize_nvfp4,
            tuned_gemm_config,
            tuned_quant_config,
        )

        M, K = a.shape
        N = b.shape[0]
        r = had_size if quantize_activation else (had_size or NOQUANT_HAD_SIZE)
        gs = torch.ones(1, dtype=torch.float32, device=a.device)
        alpha = torch.ones(1, dtype=torch.float32, device=a.device)
        a16 = a.to(torch.bfloat16).contiguous()
        quant_config = tuned_quant_config(a16, r) if quantize_activation else {}
        out = torch.empty(M, N, dtype=torch.bfloat16, device=a.device)
        block_scaled, note = _block_scaled_gemm(a.device, K)
        if block_scaled:
            quantize = triton_dot_scaled.quantize_operand
            b_packed, b_scales, b_blocked = quantize(b.to(torch.bfloat16), r, gs)
            a_packed, a_scales, a_blocked = quantize(a16, r, gs)
            q_buf = (torch.empty_like(a_packed), a_blocked.clone())  # padding stays zero
            quantized = dict(linear=False, swizzled=True, out=q_buf)
            kernel = triton_dot_scaled.describe(K)

            def gemm(packed, blocked):
                gemm_args = (packed, blocked, b_packed, b_blocked, alpha)
                return triton_dot_scaled.nvfp4_gemm(*gemm_args, out=out)

            prequantized = (a_packed, a_blocked)
        else:
            b_packed, b_scales = quantize_nvfp4(b.to(torch.bfloat16), r, gs)
            a_packed, a_scales = quantize_nvfp4(a16, r, gs)
            config = tuned_gemm_config(a_packed, a_scales, b_packed, b_scales)
            q_buf = (torch.empty_like(a_packed), torch.empty_like(a_scales))
            quantized = dict(out=q_buf)
            kernel = f"triton {config!r}{note}"

            def gemm(packed, scales):
                return nvfp4_gemm(packed, scales, b_packed, b_scales, alpha, out=out, config=config)

            prequantized = (a_packed, a_scales)

        def quantize():
            return quantize_nvfp4(a16, r, gs, **quantized, **quant_config)

        operands = (a_packed, a_scales, b_packed, b_scales)
        return nvfp4_prepared(
            gemm, quantize if quantize_activation else None, prequantized, operands, kernel
        )

    return prepare


PROVIDERS = fp4_pair(
    "nvfp4-triton",
    format="nvfp4",
    description="Triton fused Hadamard + NVFP4 quantize, then Triton W4A4 GEMM (fp16 MMA, or "
    "tl.dot_scaled on compute capability 10.x)",
    noquant_description="Triton W4A4 GEMM (fp16 MMA, or tl.dot_scaled on compute capability "
    "10.x) on a pre-quantized activation (had 16 when unset)",
    unavailable_reason=_unavailable_reason,
    make_prepare=_make_prepare,
)
