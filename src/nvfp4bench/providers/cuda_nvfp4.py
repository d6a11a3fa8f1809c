"""NVFP4 + Hadamard in CUDA C++ compiled at run time (NVRTC), for GPUs without FP4 tensor cores.

Kernels: ``nvfp4bench.kernels.cuda_nvfp4`` (a warp-shuffle Hadamard + NVFP4 quantizer; a
Marlin-style small-M GEMM on a weight re-laid once into mma.sync fragment order, with mma.sync or,
on sm_90, wgmma). Same semantics
and global scales (1) as the Triton providers. The weight is quantized and re-laid once in
prepare (0.5625 bytes per value in GPU memory, nothing decoded is kept). The GEMM configuration
is tuned once per (M, N, K) in prepare; from M = 65 the tuned Triton GEMM competes (and above
M = 512 runs alone), the faster one is timed. Each row records which kernel ran.

* ``nvfp4-cuda``: rotate + quantize the activation inside the timed call, then the GEMM.
* ``nvfp4-cuda-noquant``: the GEMM alone on a pre-quantized activation (had 16 when unset).
"""

from __future__ import annotations

import torch

from .base import NOQUANT_HAD_SIZE, Prepared, fp4_pair, fp4_product_reference
from .requirements import first_reason, loads, needs_cuda_capability

# Batch sizes where each GEMM is tuned (benchmarks/NOTES.md, H100): the CUDA kernel up to 512
# tokens (at 1024 Triton's planes GEMM beats it on every Llama-3.3-70B layer; at 512 each wins on
# two), the Triton GEMM from 65 on; between the two, the faster one runs.
CUDA_GEMM_MAX_M = 512
TRITON_GEMM_MIN_M = 65

# mma.sync fp16, cp.async (8.0) and the E4M3 conversion instruction (8.9).
_capability_check = needs_cuda_capability((8, 9))


def _compile_a_kernel(device: torch.device) -> None:
    """cuda-python and NVRTC are there and compile for this GPU."""
    from ..kernels import cuda_nvfp4

    cuda_nvfp4.compile_variant(cuda_nvfp4.QUANT_VARIANTS[0], cuda_nvfp4.device_arch(device))


_unavailable_reason = first_reason(
    _capability_check, loads("NVRTC kernels unavailable", _compile_a_kernel)
)


def _gemm(a_packed, a_scales, b_packed, b_scales, N, K, out):
    """The timed GEMM for these operands: (callable(packed, scales) -> out, kernel label)."""
    from ..kernels import cuda_nvfp4
    from ..kernels.triton_nvfp4 import nvfp4_gemm, tuned_gemm_config
    from ..kernels.tuning import time_graph, tuning_rep_ms

    M, device = a_packed.shape[0], a_packed.device
    alpha = torch.ones(1, dtype=torch.float32, device=device)
    choices = []  # (median ms, callable, label)
    if M <= CUDA_GEMM_MAX_M:
        weight = cuda_nvfp4.permute_weight(b_packed, b_scales)
        cuda_gemm, ms = cuda_nvfp4.tune_gemm(
            a_packed, a_scales, weight, N, K, alpha, rep_ms=tuning_rep_ms()
        )

        def run_cuda(packed, scales):
            return cuda_gemm(packed, scales, weight, alpha, out)

        choices.append((ms, run_cuda, str(cuda_gemm.config)))
    if M >= TRITON_GEMM_MIN_M:
        config = tuned_gemm_config(a_packed, a_scales, b_packed, b_scales)

        def run_triton(packed, scales):
            return nvfp4_gemm(packed, scales, b_packed, b_scales, alpha, out=out, config=config)

        ms = time_graph(lambda: run_triton(a_packed, a_scales), tuning_rep_ms()) if choices else 0.0
        choices.append((ms, run_triton, f"triton {config!r}"))
    _, run, label = min(choices, key=lambda choice: choice[0])
    return run, label


def _make_prepare(quantize_activation: bool):
    def prepare(a: torch.Tensor, b: torch.Tensor, had_size: int | None) -> Prepared:
        from ..kernels.cuda_nvfp4 import quantize_nvfp4

        M, K = a.shape
        N = b.shape[0]
        if K % 64 or N % 16:
            raise ValueError(
                f"the CUDA NVFP4 kernels need K % 64 == 0 and N % 16 == 0 (N={N}, K={K})"
            )
        r = had_size if quantize_activation else (had_size or NOQUANT_HAD_SIZE)
        gs = torch.ones(1, dtype=torch.float32, device=a.device)
        a16 = a.to(torch.bfloat16).contiguous()
        b_packed, b_scales = quantize_nvfp4(b.to(torch.bfloat16).contiguous(), r, gs)
        a_packed, a_scales = quantize_nvfp4(a16, r, gs)
        out = torch.empty(M, N, dtype=torch.bfloat16, device=a.device)
        gemm, kernel = _gemm(a_packed, a_scales, b_packed, b_scales, N, K, out)
        q_buf = (torch.empty_like(a_packed), torch.empty_like(a_scales))

        if quantize_activation:

            def run():
                return gemm(*quantize_nvfp4(a16, r, gs, out=q_buf))
        else:

            def run():
                return gemm(a_packed, a_scales)

        reference = fp4_product_reference(a_packed, a_scales, b_packed, b_scales, 1.0)
        # Exact up to fp32 accumulation order and the bf16 output rounding.
        return Prepared(run=run, reference=reference, tolerance=1e-2, kernel=kernel)

    return prepare


PROVIDERS = fp4_pair(
    "nvfp4-cuda",
    format="nvfp4",
    description="CUDA (NVRTC) Hadamard + NVFP4 quantize, then a Marlin-style W4A4 GEMM "
    "(mma.sync or wgmma, fp16); Triton GEMM where faster (M > 64)",
    noquant_description="CUDA (NVRTC) W4A4 GEMM on a pre-quantized activation (had 16 when unset)",
    unavailable_reason=_unavailable_reason,
    make_prepare=_make_prepare,
)
