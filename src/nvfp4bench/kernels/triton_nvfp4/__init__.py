"""NVFP4 (E2M1 values, E4M3 scale per 16, fp32 global scale) + Hadamard kernels in Triton.

For GPUs without FP4 tensor cores (compute capability 8.0+, tuned on the H100, sm_90). What they
compute is docs/nvfp4-spec.md and ``nvfp4bench.numerics`` (the reference). One module each:

* ``codec``: E2M1 / E4M3 decoding and encoding on the bits, bf16 rounding, the scale swizzle;
* ``quantize``: ``quantize_nvfp4(x, had_size, global_scale)``, the fused rotate + quantize of bf16
  x [M, K] to packed uint8 [M, K/2] and E4M3 scales, linear [M, K/16] and/or swizzled;
* ``gemm``: ``nvfp4_gemm(a, sa, b, sb, alpha)``, bf16 [M, N] = alpha * dequant(a) @ dequant(b)^T
  on the fp16 tensor cores (a GEMV kernel and split-K for small M);
* ``candidates``: the H100 tuning spaces, and the untuned default configurations;
* ``tuned``: ``tuned_gemm_config`` and ``tuned_quant_config``, the fastest candidates, timed once
  per problem size. Their in-process caches are ``kernels.tuning``'s (``tuning.forget()`` empties
  them).
"""

from .candidates import QUANT_CANDIDATES, GemmConfig, default_gemm_config, gemm_candidates
from .gemm import LAST_KERNEL, decode_planes, nvfp4_gemm
from .quantize import quantize_nvfp4, swizzled_shape
from .tuned import tuned_gemm_config, tuned_quant_config

__all__ = [
    "LAST_KERNEL",
    "QUANT_CANDIDATES",
    "GemmConfig",
    "decode_planes",
    "default_gemm_config",
    "gemm_candidates",
    "nvfp4_gemm",
    "quantize_nvfp4",
    "swizzled_shape",
    "tuned_gemm_config",
    "tuned_quant_config",
]
