"""MXFP4 + Hadamard in Triton: the fused rotate + quantize kernel in its MXFP4 mode, then
``tl.dot_scaled`` with ``"e2m1"`` operands and E8M0 scales (``kernels.triton_dot_scaled``).

On compute capability 10.x Triton lowers it to the block-scaled FP4 tensor cores; on 8.x and 9.x
(the H100) it decodes both operands to bf16 and runs the bf16 tensor cores, so there MXFP4 saves
memory traffic, not arithmetic. Tile sizes are tuned once per shape in prepare, as the NVFP4
Triton providers do; the weight is quantized once with the same Hadamard size.

* ``mxfp4-triton``: rotate + quantize the activation inside the timed call, then the GEMM.
  Had sizes 32, 64 and 128 (16 is skipped: an MXFP4 rotation must cover whole 32-value groups).
* ``mxfp4-triton-noquant``: the GEMM alone on a pre-quantized activation (had 32 when unset).
"""

from __future__ import annotations

import torch

from .base import MX_NOQUANT_HAD_SIZE, Prepared, fp4_pair, fp4_product_reference
from .requirements import first_reason, loads, needs_cuda_capability


def _import_kernels(device: torch.device) -> None:
    from ..kernels import triton_dot_scaled  # noqa: F401


# tl.dot_scaled's bf16 decomposition needs the bf16 tensor cores of compute capability 8.0; Triton
# compiles it for sm_80, sm_90 and sm_100 (tests/test_triton_mxfp4.py).
_unavailable_reason = first_reason(
    needs_cuda_capability((8, 0)), loads("triton not importable", _import_kernels)
)


def _make_prepare(quantize_activation: bool):
    def prepare(a: torch.Tensor, b: torch.Tensor, had_size: int | None) -> Prepared:
        from ..kernels.triton_dot_scaled import describe, mxfp4_gemm, tuned_mx_config
        from ..kernels.triton_nvfp4 import quantize_nvfp4, tuned_quant_config

        M, K = a.shape
        N = b.shape[0]
        r = had_size if quantize_activation else (had_size or MX_NOQUANT_HAD_SIZE)
        if K % 64:
            raise ValueError(f"K={K} is not a multiple of 64 (the tl.dot_scaled GEMM)")
        a16 = a.to(torch.bfloat16).contiguous()
        b_packed, b_scales = quantize_nvfp4(b.to(torch.bfloat16), r, fmt="mxfp4")
        a_packed, a_scales = quantize_nvfp4(a16, r, fmt="mxfp4")
        quant_config = tuned_quant_config(a16, r, fmt="mxfp4") if quantize_activation else {}
        config = tuned_mx_config(a_packed, a_scales, b_packed, b_scales)
        alpha = torch.ones(1, dtype=torch.float32, device=a.device)
        out = torch.empty(M, N, dtype=torch.bfloat16, device=a.device)
        q_buf = (torch.empty_like(a_packed), torch.empty_like(a_scales))

        def gemm(packed, scales):
            return mxfp4_gemm(packed, scales, b_packed, b_scales, alpha, out=out, config=config)

        if quantize_activation:

            def run():
                return gemm(*quantize_nvfp4(a16, r, fmt="mxfp4", out=q_buf, **quant_config))
        else:

            def run():
                return gemm(a_packed, a_scales)

        reference = fp4_product_reference(a_packed, a_scales, b_packed, b_scales, 1.0, "mxfp4")
        # Exact up to fp32 accumulation order and the bf16 output rounding.
        return Prepared(run=run, reference=reference, tolerance=1e-2, kernel=describe(K, config))

    return prepare


PROVIDERS = fp4_pair(
    "mxfp4-triton",
    format="mxfp4",
    description="Triton fused Hadamard + MXFP4 quantize, then tl.dot_scaled e2m1 x e2m1 with E8M0 "
    "scales (bf16 tensor cores below compute capability 10.0)",
    noquant_description="Triton tl.dot_scaled MXFP4 GEMM on a pre-quantized activation (had 32 "
    "when unset)",
    unavailable_reason=_unavailable_reason,
    make_prepare=_make_prepare,
)
