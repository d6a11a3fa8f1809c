"""Check and time the CUDA (NVRTC) NVFP4 kernels against cuBLAS BF16 on Llama-3.3-70B layers.

Run on a GPU (from the repository root):

    PYTHONPATH=src python benchmarks/bench_cuda_nvfp4.py --out DIR [--ms 1 16 ...] [--check]
        [--triton] [--cold-l2] [--tune-verbose]

``--check`` first compares the quantizer with ``numerics.quantize_nvfp4`` (every had size,
Gaussian and Student-t inputs: codes and scales bit-equal except one-step ties) and every GEMM
candidate with bf16 of the float64 product of its own operands (bit-equal up to ties), printing
the mismatch counts. Then per (layer, M): cuBLAS BF16 ``F.linear``; the CUDA GEMM on a
pre-quantized activation (best of the tuning candidates); quantize (had 16) + GEMM; the quantizer
alone; with ``--triton`` the tuned Triton GEMM of the same operands. All timed in the same process
with ``triton.testing.do_bench_cudagraph`` medians (warm L2); ``--cold-l2`` adds
``triton.testing.do_bench`` medians (a 256 MB buffer zeroed before each call) for M <= 64. The copy
bandwidth is measured in the same run, and each row carries its floor (bench_triton_nvfp4.floors).
Writes ``DIR/bench_cuda_nvfp4.tsv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from functools import partial

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_triton_nvfp4 import LAYERS, MS, floors  # noqa: E402

from nvfp4bench import numerics  # noqa: E402
from nvfp4bench.kernels import cuda_nvfp4 as cn  # noqa: E402
from nvfp4bench.kernels.tuning import time_graph  # noqa: E402


def cold_l2_median(fn, rep_ms: float) -> float:
    """Median ms of fn with L2 flushed before each call (triton's do_bench)."""
    import triton.testing

    fn()
    return float(triton.testing.do_bench(fn, rep=rep_ms, return_mode="median"))


def copy_bandwidth(rep_ms: float) -> float:
    """bytes read + written per second of a 512 MiB device-to-device copy."""
    src = torch.empty(256 * 2**20, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    ms = time_graph(lambda: dst.copy_(src), rep_ms)
    return 2 * src.numel() * 2 / (ms * 1e-3)


def heavy_tailed(shape, generator) -> torch.Tensor:
    """Student-t with 3 degrees of freedom (outliers of 10-100 sigma appear)."""
    z = torch.randn(shape, generator=generator, device="cuda")
    chi2 = sum(torch.randn(shape, generator=generator, device="cuda") ** 2 for _ in range(3))
    return z / torch.sqrt(chi2 / 3)


def check_quantizer(log) -> None:
    gen = torch.Generator("cuda").manual_seed(1)
    gs = torch.ones(1, device="cuda")
    for dist in ("gaussian", "student-t"):
        x = torch.randn(512, 4096, generator=gen, device="cuda") if dist == "gaussian" else (
            heavy_tailed((512, 4096), gen))  # fmt: skip
        x = x.to(torch.bfloat16)
        for r in (None, *cn.HAD_SIZES):
            codes, scales = cn.quantize_nvfp4(x, r, gs)
            ref_codes, ref_scales = numerics.quantize_nvfp4(x, r, 1.0)
            scale_diff = (scales.view(torch.uint8) != ref_scales.view(torch.uint8)).sum().item()
            ours = numerics.dequantize_nvfp4(codes, scales)
            ref = numerics.dequantize_nvfp4(ref_codes, ref_scales)
            values = (ours != ref).sum().item()
            log(
                f"check quantize {dist:9s} had={r}: {values} of {ours.numel()} values and "
                f"{scale_diff} of {scales.numel()} scales differ from numerics.quantize_nvfp4"
            )


def check_gemm(log) -> None:
    gen = torch.Generator("cuda").manual_seed(2)
    gs = torch.ones(1, device="cuda")
    alpha = torch.ones(1, device="cuda")
    N, K = 1024, 4096
    w = heavy_tailed((N, K), gen).to(torch.bfloat16)
    b_packed, b_scales = cn.quantize_nvfp4(w, 16, gs)
    weight = cn.permute_weight(b_packed, b_scales)
    b_dq = numerics.dequantize_nvfp4(b_packed, b_scales).double()
    for M in (1, 5, 16, 33, 64, 100, 128, 200):
        a = torch.randn(M, K, generator=gen, device="cuda").to(torch.bfloat16)
        a_packed, a_scales = cn.quantize_nvfp4(a, 16, gs)
        ref = (numerics.dequantize_nvfp4(a_packed, a_scales).double() @ b_dq.T).to(torch.bfloat16)
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        occupancy = partial(cn.occupancy, device=torch.device("cuda"))
        for config in cn.gemm_candidates(M, N, K, occupancy, sms, cn.wgmma_arch(cn.device_arch(0))):
            out = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
            cn.CudaGemm(M, N, K, config, torch.device("cuda"))(
                a_packed, a_scales, weight, alpha, out
            )
            torch.cuda.synchronize()
            bad = (out != ref).sum().item()
            err = numerics.relative_error(out, ref)
            log(f"check gemm M={M:3d} {config}: {bad} of {out.numel()} outputs differ from "
                f"bf16(float64), rel err {err:.2e}")  # fmt: skip


def time_row(args, a, w, b, bw_copy: float, log) -> dict:
    """One (layer, M): BF16, the tuned CUDA GEMM, quantize + GEMM, the quantizer, optionally the
    Triton GEMM and cold-L2 times; microseconds and ratios."""
    (M, K), N = a.shape, w.shape[0]
    b_packed, b_scales, weight = b
    gs = torch.ones(1, device=a.device)
    a_packed, a_scales = cn.quantize_nvfp4(a, 16, gs)
    q_buf = (torch.empty_like(a_packed), torch.empty_like(a_scales))
    out = torch.empty(M, N, dtype=torch.bfloat16, device=a.device)
    tune_log = log if args.tune_verbose else None
    gemm, _ = cn.tune_gemm(a_packed, a_scales, weight, N, K, gs, log=tune_log)

    def quant_gemm():
        p, s = cn.quantize_nvfp4(a, 16, gs, out=q_buf)
        return gemm(p, s, weight, gs, out)

    def bf16():
        return F.linear(a, w)

    def gemm_only():
        return gemm(a_packed, a_scales, weight, gs, out)

    row = {"M": M, "N": N, "K": K, "config": str(gemm.config)}
    row["bf16_us"] = time_graph(bf16, args.rep_ms) * 1e3
    row["gemm_us"] = time_graph(gemm_only, args.rep_ms) * 1e3
    row["q+gemm_us"] = time_graph(quant_gemm, args.rep_ms) * 1e3
    row["quant_us"] = (
        time_graph(partial(cn.quantize_nvfp4, a, 16, gs, out=q_buf), args.rep_ms) * 1e3
    )
    if args.triton:
        from nvfp4bench.kernels import triton_nvfp4 as tn

        cfg = tn.tuned_gemm_config(a_packed, a_scales, b_packed, b_scales)
        triton_gemm = partial(tn.nvfp4_gemm, a_packed, a_scales, b_packed, b_scales, gs,
                              out=out, config=cfg)  # fmt: skip
        row["triton_us"] = time_graph(triton_gemm, args.rep_ms) * 1e3
    if args.cold_l2 and M <= 64:
        row["bf16_cold_us"] = cold_l2_median(bf16, args.rep_ms) * 1e3
        row["gemm_cold_us"] = cold_l2_median(gemm_only, args.rep_ms) * 1e3
    fl = floors(M, N, K)
    row["x_bf16"] = row["bf16_us"] / row["gemm_us"]
    row["q+gemm_x_bf16"] = row["bf16_us"] / row["q+gemm_us"]
    row["gemm_x_floor"] = row["gemm_us"] / (fl["gemm"] * 1e6)
    row["quant_overhead"] = row["q+gemm_us"] / row["gemm_us"] - 1
    row["quant_x_copy"] = 2.5625 * M * K / (row["quant_us"] * 1e-6) / bw_copy
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--ms", type=int, nargs="+", default=[m for m in MS if m <= 1024])
    parser.add_argument("--layers", nargs="+", default=list(LAYERS))
    parser.add_argument("--rep-ms", type=float, default=20.0)
    parser.add_argument(
        "--quant-ms",
        type=int,
        nargs="*",
        default=[],
        help="batch sizes at which only the quantizer is timed (K = 8192)",
    )
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--triton", action="store_true")
    parser.add_argument("--cold-l2", action="store_true")
    parser.add_argument("--tune-verbose", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log_file = open(os.path.join(args.out, "bench_cuda_nvfp4.log"), "w")

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")

    dev = torch.device("cuda")
    log(f"{datetime.date.today()} {torch.cuda.get_device_name()} torch {torch.__version__} "
        f"nvrtc {cn._nvrtc_version()}")  # fmt: skip
    if args.check:
        check_quantizer(log)
        check_gemm(log)
    bw_copy = copy_bandwidth(args.rep_ms)
    log(f"copy bandwidth (read + write) {bw_copy / 1e12:.2f} TB/s")
    gs = torch.ones(1, device=dev)
    gen = torch.Generator(dev).manual_seed(0)
    for M in args.quant_ms:
        x = torch.randn(M, 8192, generator=gen, device=dev).to(torch.bfloat16)
        for r in (None, *cn.HAD_SIZES):
            us = time_graph(partial(cn.quantize_nvfp4, x, r, gs), args.rep_ms) * 1e3
            log(f"quantize M={M} K=8192 had={r}: {us:.1f} us, "
                f"{2.5625 * x.numel() / (us * 1e-6) / bw_copy:.2f} x copy bandwidth")  # fmt: skip
    rows = []
    for layer in args.layers:
        N, K = LAYERS[layer]
        w = torch.randn(N, K, generator=gen, device=dev).to(torch.bfloat16)
        b_packed, b_scales = cn.quantize_nvfp4(w, 16, gs)
        weight = cn.permute_weight(b_packed, b_scales)
        for M in args.ms:
            a = torch.randn(M, K, generator=gen, device=dev).to(torch.bfloat16)
            row = time_row(args, a, w, (b_packed, b_scales, weight), bw_copy, log)
            rows.append({"layer": layer, **row})
            log("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in rows[-1].items()))  # fmt: skip
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(os.path.join(args.out, "bench_cuda_nvfp4.tsv"), sep="\t", index=False)
    with open(os.path.join(args.out, "bench_cuda_nvfp4.md"), "w") as f:
        f.write(frame.to_markdown(index=False, floatfmt=".3g") + "\n")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
