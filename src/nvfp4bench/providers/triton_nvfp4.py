"""NVFP4 + Hadamard in Triton for GPUs without FP4 tensor cores (Hopper, Ampere+).

Kernels: ``nvfp4bench.kernels.triton_nvfp4`` (fused rotate + quantize; W4A4 GEMM decoding E2M1 x
E4M3 to fp16 for the tensor cores, a GEMV path and split-K for small M). Global scales are 1
(alpha = 1), as vLLM's bench_nvfp4_qutlass.py uses them. The weight is quantized once in prepare
with the same Hadamard size; the GEMM and quantize configurations are tuned once per shape in
prepare (small candidate spaces, like triton.autotune) so the timed call does no tuning.

* ``nvfp4-triton``: rotate + quantize the activation inside the timed call, then the GEMM.
  had_size None means no rotation (plain NVFP4).
* ``nvfp4-triton-noquant``: the GEMM alone on a pre-quantized activation; with had_size None
  both operands are quantized with the 16-point rotation (as vllm_cutlass's noquant provider).
"""

from __future__ import annotations

import torch

from .base import NOQUANT_HAD_SIZE, Prepared, nvfp4_pair, nvfp4_product_reference
from .requirements import first_reason, loads, needs_cuda_capability

_capability_check = needs_cuda_capability((8, 0))


def _import_kernels(device: torch.device) -> None:
    import triton  # noqa: F401

    from ..kernels import triton_nvfp4  # noqa: F401


_unavailable_reason = first_reason(
    _capability_check, loads("triton not importable", _import_kernels)
)


def _make_prepare(quantize_activation: bool):
    def prepare(a: torch.Tensor, b: torch.Tensor, had_size: int | None) -> Prepared:
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
        b_packed, b_scales = quantize_nvfp4(b.to(torch.bfloat16), r, gs)
        a_packed, a_scales = quantize_nvfp4(a16, r, gs)
        config = tuned_gemm_config(a_packed, a_scales, b_packed, b_scales)
        quant_config = tuned_quant_config(a16, r) if quantize_activation else {}
        out = torch.empty(M, N, dtype=torch.bfloat16, device=a.device)
        q_buf = (torch.empty_like(a_packed), torch.empty_like(a_scales))

        def gemm(packed, scales):
            return nvfp4_gemm(packed, scales, b_packed, b_scales, alpha, out=out, config=config)

        if quantize_activation:

            def run():
                packed, scales = quantize_nvfp4(a16, r, gs, out=q_buf, **quant_config)
                return gemm(packed, scales)
        else:

            def run():
                return gemm(a_packed, a_scales)

        reference = nvfp4_product_reference(a_packed, a_scales, b_packed, b_scales, float(alpha))
        # Exact up to fp32 accumulation order and the bf16 output rounding.
        return Prepared(run=run, reference=reference, tolerance=1e-2, kernel=f"triton {config!r}")

    return prepare


PROVIDERS = nvfp4_pair(
    "nvfp4-triton",
    description="Triton fused Hadamard + NVFP4 quantize, then Triton W4A4 GEMM (fp16 MMA)",
    noquant_description="Triton W4A4 GEMM on a pre-quantized activation (had 16 when unset)",
    unavailable_reason=_unavailable_reason,
    make_prepare=_make_prepare,
)
