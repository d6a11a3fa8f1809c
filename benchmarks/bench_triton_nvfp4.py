"""Time the Triton NVFP4 kernels against cuBLAS BF16 over Llama-3.3-70B (TP1) layer shapes.

Run on a GPU (from the repository root):

    PYTHONPATH=src python benchmarks/bench_triton_nvfp4.py [--quick] --out DIR

Per (layer, M): cuBLAS BF16 ``F.linear``, the W4A4 GEMM on pre-quantized operands, quantize +
GEMM, and the quantize kernel alone, each timed with ``triton.testing.do_bench_cudagraph``
(median; graph replays, L2 not flushed: warm-L2 numbers). Each row also gets its floor:

* BF16 GEMM: max(2MNK / P, (2MK + 2NK + 2MN) / B_gemv)
* NVFP4 GEMM: max(2MNK / P, (0.5625 (M + N) K + 2MN) / B_gemv) - the tensor cores run fp16
  here, so P is the BF16 peak: at large M the best this GEMM can do is equal BF16.
* quantize: 2.5625 MK / B_copy (2 bytes read, 0.5 + 1/16 written per element)
* quantize + GEMM: the sum of those two.

P, B_gemv, B_copy: the floors measured on the H100 on 2026-11-25 (700 TFLOP/s, 2.9 and 3.0 TB/s);
``--measure-floors`` re-measures copy bandwidth and an 8192^3 cuBLAS GEMM in the same run and
prints them next to those. The GEMM configuration is tuned per shape first (verbose: each
candidate's time is printed), then every output is checked on a sample against float64.
Writes ``DIR/bench_triton_nvfp4.tsv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from bench_log import appending_log

from nvfp4bench.kernels.tuning import forget, time_graph

LAYERS = {  # Llama-3.3-70B, TP1: (N, K) of the fused linears
    "qkv": (10240, 8192),
    "o": (8192, 8192),
    "gate_up": (57344, 8192),
    "down": (8192, 28672),
}
MS = [1, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 24576, 32768]
QUICK_MS = [1, 16, 128, 1024, 4096, 16384]

PEAK_FLOPS = 700e12  # cuBLAS BF16 at 8192^3 on this H100 (2026-11-25)
BW_GEMV = 2.9e12  # BF16 GEMV, bytes read
BW_COPY = 3.0e12  # device-to-device copy, read + write


def floors(M: int, N: int, K: int) -> dict[str, float]:
    flops = 2.0 * M * N * K
    t_mma = flops / PEAK_FLOPS
    bf16 = max(t_mma, 2.0 * (M * K + N * K + M * N) / BW_GEMV)
    fp4 = max(t_mma, (0.5625 * (M + N) * K + 2.0 * M * N) / BW_GEMV)
    quant = 2.5625 * M * K / BW_COPY
    return {"bf16": bf16, "gemm": fp4, "quant": quant, "quant+gemm": fp4 + quant}


def measure_floors(rep_ms: float) -> dict[str, float]:
    n = 1 << 28  # 512 MiB of bf16
    src = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    ms = time_graph(lambda: dst.copy_(src), rep_ms)
    copy_bw = 2 * n * 2 / (ms * 1e-3)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = time_graph(lambda: a @ b, rep_ms)
    flops = 2 * 8192**3 / (ms * 1e-3)
    w = torch.randn(8192, 28672, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(1, 28672, device="cuda", dtype=torch.bfloat16)
    ms = time_graph(lambda: F.linear(x, w), rep_ms)
    gemv_bw = w.numel() * 2 / (ms * 1e-3)
    return {"copy_TBps": copy_bw / 1e12, "bf16_TFLOPs": flops / 1e12, "gemv_TBps": gemv_bw / 1e12}


E2M1_VALUES = [
    0.0,
    0.5,
    1.0,
    1.5,
    2.0,
    3.0,
    4.0,
    6.0,
    -0.0,
    -0.5,
    -1.0,
    -1.5,
    -2.0,
    -3.0,
    -4.0,
    -6.0,
]


def dequant64(packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """float64 q * s (a LUT; independent of the kernels and of compressed-tensors)."""
    lut = torch.tensor(E2M1_VALUES, dtype=torch.float64, device=packed.device)
    q = torch.stack([lut[(packed & 0xF).long()], lut[(packed >> 4).long()]], -1).flatten(-2)
    s = scales.view(torch.uint8).view(torch.float8_e4m3fn).double()
    return (q.view(*q.shape[:-1], -1, 16) * s[..., None]).flatten(-2)


def sample_check(out, a_q, a_s, b_q, b_s, gen_seed: int) -> tuple[float, float]:
    """(relative error, mismatch rate vs bf16(float64 product)) on 64 x 256 sampled outputs."""
    g = torch.Generator(device="cpu").manual_seed(gen_seed)
    M, N = out.shape
    rows = torch.randint(0, M, (min(M, 64),), generator=g).to(out.device)
    cols = torch.randint(0, N, (256,), generator=g).to(out.device)
    a_s8, b_s8 = a_s.view(torch.uint8), b_s.view(torch.uint8)
    ref = dequant64(a_q[rows], a_s8[rows]) @ dequant64(b_q[cols], b_s8[cols]).T
    got = out[rows][:, cols].double()
    mism = (got.float() != ref.to(torch.bfloat16).float()).float().mean().item()
    rel = (torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref)).item()
    return rel, mism


def quant_sweep(rep_ms: float, log) -> None:
    """Quantize kernel variants at M=4096, K=8192: GB/s against the copy floor."""
    from nvfp4bench.kernels.triton_nvfp4 import QUANT_CANDIDATES, quantize_nvfp4

    x = torch.randn(4096, 8192, device="cuda", dtype=torch.bfloat16)
    gs = torch.ones(1, device="cuda")
    nbytes = x.numel() * 2.5625
    for r in (16, 128):
        for block_elems, warps, per_sm, stages in QUANT_CANDIDATES:
            kw = dict(block_elems=block_elems, num_warps=warps, programs_per_sm=per_sm,
                      num_stages=stages)  # fmt: skip
            try:
                ms = time_graph(lambda kw=kw, r=r: quantize_nvfp4(x, r, gs, **kw), rep_ms)
            except Exception as error:  # noqa: BLE001
                log(f"quant r={r} {kw}: FAILED {type(error).__name__}: {str(error)[:100]}")
                continue
            bw = nbytes / (ms * 1e-3)
            log(f"quant r={r:3d} {kw}: {ms * 1e3:8.1f} us  {bw / 1e9:7.0f} GB/s  "
                f"{bw / BW_COPY:.2f} x copy floor")  # fmt: skip


def make_weights(N: int, K: int, had_size: int):
    from nvfp4bench.kernels.triton_nvfp4 import quantize_nvfp4

    b = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    b_q, b_s = quantize_nvfp4(b, had_size, torch.ones(1, device="cuda"))
    return b, b_q, b_s


def bench_row(M: int, N: int, K: int, weights, args):
    """Times (ms) of bf16 / gemm / quant+gemm / quant, the sampled check, the GEMM config."""
    import nvfp4bench.kernels.triton_nvfp4 as tk

    b_bf16, b_q, b_s = weights
    gs = torch.ones(1, device="cuda")
    alpha = torch.ones(1, device="cuda")
    a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    a_q, a_s = tk.quantize_nvfp4(a, args.had_size, gs)
    q_buf = (torch.empty_like(a_q), torch.empty_like(a_s))
    out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    if args.tune_verbose:  # tune again in this process (NVFP4BENCH_RETUNE=1: not from disk)
        forget()
    cfg = tk.tuned_gemm_config(a_q, a_s, b_q, b_s, verbose=args.tune_verbose, log=args.log)
    qcfg = tk.tuned_quant_config(a, args.had_size, verbose=args.tune_verbose, log=args.log)

    def gemm():
        return tk.nvfp4_gemm(a_q, a_s, b_q, b_s, alpha, out=out, config=cfg)

    def quant():
        return tk.quantize_nvfp4(a, args.had_size, gs, out=q_buf, **qcfg)

    def quant_gemm():
        q, s = tk.quantize_nvfp4(a, args.had_size, gs, out=q_buf, **qcfg)
        return tk.nvfp4_gemm(q, s, b_q, b_s, alpha, out=out, config=cfg)

    out.fill_(float("nan"))
    gemm()
    k = tk.LAST_KERNEL[0]
    if k is not None and hasattr(k, "n_regs"):
        cfg = tk.GemmConfig(cfg, regs=k.n_regs, spills=k.n_spills, smem=k.metadata.shared)
    rel, mism = sample_check(out, a_q, a_s, b_q, b_s, M)
    times = {
        "bf16": time_graph(lambda: F.linear(a, b_bf16), args.rep_ms),
        "gemm": time_graph(gemm, args.rep_ms),
        "quant+gemm": time_graph(quant_gemm, args.rep_ms),
        "quant": time_graph(quant, args.rep_ms),
    }
    return times, rel, mism, cfg, qcfg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"M in {QUICK_MS}")
    parser.add_argument("--ms", type=int, nargs="*", help="batch sizes (overrides --quick)")
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--had-size", type=int, default=16)
    parser.add_argument("--rep-ms", type=float, default=20.0)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--measure-floors", action="store_true")
    parser.add_argument("--quant-sweep", action="store_true")
    parser.add_argument("--tune-verbose", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    log = appending_log(os.path.join(args.out, "bench_triton_nvfp4.log"))

    args.log = log

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    import triton

    now = datetime.datetime.now().isoformat(timespec="seconds")
    log(f"# {props.name}, {props.multi_processor_count} SMs, torch {torch.__version__}, "
        f"triton {triton.__version__}, {now}")  # fmt: skip
    if args.measure_floors:
        log(f"floors measured now: {measure_floors(args.rep_ms)} (constants used: copy "
            f"{BW_COPY / 1e12} TB/s, gemv {BW_GEMV / 1e12} TB/s, "
            f"bf16 {PEAK_FLOPS / 1e12} TFLOP/s)")  # fmt: skip
    if args.quant_sweep:
        quant_sweep(args.rep_ms, log)

    ms_list = args.ms or (QUICK_MS if args.quick else MS)
    rows = []
    header = ["layer", "N", "K", "M", "impl", "time_us", "floor_us", "x_floor", "x_bf16",
              "tflops", "rel_err", "mismatch", "config"]  # fmt: skip
    tsv = os.path.join(args.out, "bench_triton_nvfp4.tsv")
    tsv_f = open(tsv, "w")  # written row by row: a run cut short keeps what it measured
    tsv_f.write("\t".join(header) + "\n")
    torch.manual_seed(0)
    for layer in args.layers:
        N, K = LAYERS[layer]
        weights = make_weights(N, K, args.had_size)
        for M in ms_list:
            t0 = time.time()
            try:
                times, rel, mism, cfg, qcfg = bench_row(M, N, K, weights, args)
            except Exception as error:  # noqa: BLE001 - one failing row must not end the run
                log(f"{layer} M={M}: FAILED {type(error).__name__}: {str(error)[:300]}")
                torch.cuda.empty_cache()
                continue
            fl = floors(M, N, K)
            for impl, ms in times.items():
                rows.append({
                    "layer": layer, "N": N, "K": K, "M": M, "impl": impl,
                    "time_us": ms * 1e3, "floor_us": fl[impl] * 1e6,
                    "x_floor": ms * 1e-3 / fl[impl],
                    "x_bf16": times["bf16"] / ms if impl != "quant" else math.nan,
                    "tflops": 2 * M * N * K / (ms * 1e-3) / 1e12 if impl != "quant" else math.nan,
                    "rel_err": rel if impl == "gemm" else math.nan,
                    "mismatch": mism if impl == "gemm" else math.nan,
                    "config": repr(cfg) if impl in ("gemm", "quant+gemm") else repr(qcfg),
                })  # fmt: skip
                tsv_f.write("\t".join(f"{rows[-1][h]:.4g}" if isinstance(rows[-1][h], float)
                                      else str(rows[-1][h]) for h in header) + "\n")  # fmt: skip
                tsv_f.flush()
            t_b, t_g, t_qg, t_q = (times[k] for k in ("bf16", "gemm", "quant+gemm", "quant"))
            log(
                f"{layer:7s} M={M:6d}  bf16 {t_b * 1e3:9.1f} us  gemm {t_g * 1e3:9.1f} us "
                f"({t_b / t_g:5.2f}x bf16, {t_g * 1e-3 / fl['gemm']:5.2f}x floor)  q+gemm "
                f"{t_qg * 1e3:9.1f} us ({t_b / t_qg:5.2f}x, overhead {t_qg / t_g - 1:+.1%})  "
                f"quant {t_q * 1e3:8.1f} us ({fl['quant'] / (t_q * 1e-3):4.2f} of copy BW)  "
                f"err {rel:.1e} mism {mism:.1e}  [{time.time() - t0:.0f}s] {cfg!r} | {qcfg}"
            )
        del weights
        torch.cuda.empty_cache()

    tsv_f.close()
    md = os.path.join(args.out, "bench_triton_nvfp4.md")
    with open(md, "w") as f:
        f.write(f"# Triton NVFP4 on {props.name} (do_bench_cudagraph median, warm L2)\n\n")
        f.write("| layer | M | BF16 us | GEMM us | x BF16 | GEMM x floor | q+GEMM us | x BF16 "
                "| quant overhead | quant us | quant / copy BW |\n")  # fmt: skip
        f.write("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        by = {}
        for r in rows:
            by.setdefault((r["layer"], r["M"]), {})[r["impl"]] = r
        for (layer, M), d in by.items():
            g, q, qq, bb = d["gemm"], d["quant+gemm"], d["quant"], d["bf16"]
            f.write(f"| {layer} | {M} | {bb['time_us']:.1f} | {g['time_us']:.1f} | "
                    f"{g['x_bf16']:.2f} | {g['x_floor']:.2f} | {q['time_us']:.1f} | "
                    f"{q['x_bf16']:.2f} | {q['time_us'] / g['time_us'] - 1:+.1%} | "
                    f"{qq['time_us']:.1f} | {1 / qq['x_floor']:.2f} |\n")  # fmt: skip
    log(f"wrote {tsv} and {md}")
    print(open(md).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
