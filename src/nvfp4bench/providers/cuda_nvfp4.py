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

from .base import NOQUANT_HAD_SIZE, Prepared, fp4_pair, nvfp4_prepared
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


def _prebuild(capability: tuple[int, int]) -> list:
    """Every kernel variant this GPU can run, one NVRTC compile each, into the disk cache the
    tuner loads them from (50-90 variants are raced per batch size)."""
    from functools import partial

    from ..kernels import cuda_nvfp4

    arch = f"sm_{capability[0]}{capability[1]}"
    variants = [
        v
        for v in (*cuda_nvfp4.QUANT_VARIANTS, *cuda_nvfp4.GEMM_VARIANTS)
        if not getattr(v, "wgmma", False) or cuda_nvfp4.wgmma_arch(arch)
    ]
    return [partial(cuda_nvfp4.compile_variant, v, arch) for v in variants]


def _weight(b: torch.Tensor, r: int, relaid: bool):
    """(codes, scales, the GEMM's re-laid weight or None) of weight `b` quantized with had size
    `r`, made once per worker: a provider's rows share one weight, and re-laying a large one
    takes a noticeable part of a second per row."""
    from ..kernels import cuda_nvfp4
    from ..kernels.tuning import process_cache

    cache = process_cache("cuda_nvfp4_weights")
    entry = cache.get(r)
    if entry is None or entry[0] is not b:  # holding b keeps its identity unique
        gs = torch.ones(1, dtype=torch.float32, device=b.device)
        packed, scales = cuda_nvfp4.quantize_nvfp4(b.to(torch.bfloat16).contiguous(), r, gs)
        entry = cache[r] = [b, packed, scales, None]
    if relaid and entry[3] is None:
        entry[3] = cuda_nvfp4.permute_weight(entry[1], entry[2])
    return entry[1], entry[2], entry[3]


_unavailable_reason = first_reason(
    _capability_check, loads("NVRTC kernels unavailable", _compile_a_kernel)
)


def _gemm(a_packed, a_scales, b_packed, b_scales, weight, N, K, out):
    """The timed GEMM for these operands (`weight`: b re-laid for the CUDA GEMM, where M is in
    its range): (callable(packed, scales) -> out, kernel label)."""
    from ..kernels import cuda_nvfp4
    from ..kernels.triton_nvfp4 import nvfp4_gemm, tuned_gemm_config
    from ..kernels.tuning import time_graph, tuning_rep_ms

    M, device = a_packed.shape[0], a_packed.device
    alpha = torch.ones(1, dtype=torch.float32, device=device)
    choices = []  # (median ms, callable, label)
    if M <= CUDA_GEMM_MAX_M:
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
        b_packed, b_scales, weight = _weight(b, r, relaid=M <= CUDA_GEMM_MAX_M)
        a_packed, a_scales = quantize_nvfp4(a16, r, gs)
        out = torch.empty(M, N, dtype=torch.bfloat16, device=a.device)
        gemm, kernel = _gemm(a_packed, a_scales, b_packed, b_scales, weight, N, K, out)
        q_buf = (torch.empty_like(a_packed), torch.empty_like(a_scales))
        quantize = (lambda: quantize_nvfp4(a16, r, gs, out=q_buf)) if quantize_activation else None
        operands = (a_packed, a_scales, b_packed, b_scales)
        return nvfp4_prepared(gemm, quantize, (a_packed, a_scales), operands, kernel)

    return prepare


PROVIDERS = fp4_pair(
    "nvfp4-cuda",
    format="nvfp4",
    description="CUDA (NVRTC) Hadamard + NVFP4 quantize, then a Marlin-style W4A4 GEMM "
    "(mma.sync or wgmma, fp16); Triton GEMM where faster (M > 64)",
    noquant_description="CUDA (NVRTC) W4A4 GEMM on a pre-quantized activation (had 16 when unset)",
    unavailable_reason=_unavailable_reason,
    make_prepare=_make_prepare,
    prebuild=_prebuild,
)
