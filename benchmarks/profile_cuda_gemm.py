"""Launch one CUDA NVFP4 GEMM configuration a few times, for Nsight Compute (no tuning launches).

    ncu --clock-control none --kernel-name nvfp4_gemm_small_m --launch-skip 2 --launch-count 1 \\
        --section SpeedOfLight --section WarpStateStats --section Occupancy \\
        python benchmarks/profile_cuda_gemm.py M N K MT NT WARPS STAGES SPLITS CTAS_X [KIND]

KIND: mma (default), wgmma or streamed (GemmVariant.wgmma / .streamed).
"""

from __future__ import annotations

import sys

import torch

from nvfp4bench.kernels import cuda_nvfp4 as cn


def main() -> None:
    M, N, K, mt, nt, warps, stages, splits, ctas = (int(v) for v in sys.argv[1:10])
    kind = sys.argv[10] if len(sys.argv) > 10 else "mma"
    if kind not in ("mma", "wgmma", "streamed"):
        raise SystemExit(f"kind={kind!r}: one of mma, wgmma, streamed")
    dev = torch.device("cuda")
    gs = torch.ones(1, device=dev)
    w = torch.randn(N, K, device=dev).to(torch.bfloat16)
    a = torch.randn(M, K, device=dev).to(torch.bfloat16)
    weight = cn.permute_weight(*cn.quantize_nvfp4(w, 16, gs))
    a_packed, a_scales = cn.quantize_nvfp4(a, 16, gs)
    config = cn.GemmConfig(
        cn.GemmVariant(mt, nt, warps, stages, kind != "mma", kind == "streamed"), splits, ctas
    )
    gemm = cn.CudaGemm(M, N, K, config, dev)
    out = torch.empty(M, N, dtype=torch.bfloat16, device=dev)
    for _ in range(5):
        gemm(a_packed, a_scales, weight, gs, out)
    torch.cuda.synchronize()
    print(config, "ok")


if __name__ == "__main__":
    main()
