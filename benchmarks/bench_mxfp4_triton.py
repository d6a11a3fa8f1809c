"""Time the Triton MXFP4 providers (``tl.dot_scaled``) against cuBLAS BF16 and the Triton NVFP4
providers over the Llama-3.3-70B (TP1) layer shapes, through the pipeline's own sweep.

Run on a GPU (from the repository root):

    PYTHONPATH=src python3 benchmarks/bench_mxfp4_triton.py --out DIR [--ms 1 16 128 1024 8192]

Each shape is one ``sweep.run_shape``: every provider in its own worker process, tuned in
prepare (the MXFP4 GEMM's tile sizes with ``tuned_mx_config``), checked against the float64
product of its own dequantized operands, then timed with the pipeline's timer
(``do_bench_cudagraph``, warm L2, fixed stopping, ``--rep-ms`` per row). The quantizing providers
run at ``--had-size`` (32: the smallest size both formats have). Writes
``DIR/bench_mxfp4_triton.tsv`` (the bench rows, the pipeline's columns) and
``DIR/bench_mxfp4_triton.log``: what Triton compiles the MXFP4 GEMM to here, and per (layer, M)
each provider's time and its ratio to BF16.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd
import torch
from bench_log import appending_log

LAYERS = {  # Llama-3.3-70B, TP1: (N, K) of the fused linears
    "qkv": (10240, 8192),
    "o": (8192, 8192),
    "gate_up": (57344, 8192),
    "down": (8192, 28672),
}
MS = [1, 16, 128, 1024, 8192]
PROVIDERS = [
    "torch-bf16",
    "nvfp4-triton-noquant",
    "nvfp4-triton",
    "mxfp4-triton-noquant",
    "mxfp4-triton",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ms", type=int, nargs="*", default=MS)
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--providers", nargs="*", default=PROVIDERS)
    parser.add_argument("--had-size", type=int, default=32)
    parser.add_argument("--rep-ms", type=float, default=100.0)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    import triton

    from nvfp4bench import io
    from nvfp4bench.kernels.triton_dot_scaled import mma_instructions
    from nvfp4bench.sweep import SweepSettings, run_shape

    os.makedirs(args.out, exist_ok=True)
    log = appending_log(os.path.join(args.out, "bench_mxfp4_triton.log"))

    major, minor = torch.cuda.get_device_capability()
    log(f"{torch.cuda.get_device_name()} (sm_{major}{minor}), torch {torch.__version__}, "
        f"triton {triton.__version__}")  # fmt: skip
    for fmt in ("mxfp4", "nvfp4"):
        try:
            mma = sorted(mma_instructions(major * 10 + minor, fmt))
            log(f"{fmt} tl.dot_scaled GEMM compiles to: {mma}")
        except Exception as error:  # a Triton that cannot compile it here: the rows will say so
            log(f"{fmt} tl.dot_scaled GEMM does not compile here: {type(error).__name__}: {error}")
    frames = []
    for layer in args.layers:
        N, K = LAYERS[layer]
        settings = SweepSettings(
            N=N, K=K, batch_sizes=tuple(args.ms), had_sizes=(args.had_size,),
            providers=tuple(args.providers), device="cuda", timing_method="cudagraph",
            rep_ms=args.rep_ms, stopping="fixed", max_noise=0.005, warmup_ms=None,
            tuning_rep_ms=None, row_timeout_s=600, seed=0,
        )  # fmt: skip
        rows = run_shape(settings).assign(layer=layer)
        frames.append(rows)
        io.write_tsv(pd.concat(frames), os.path.join(args.out, "bench_mxfp4_triton.tsv"))
        bf16 = rows[rows["provider"] == "torch-bf16"].set_index("M")["ms_median"]
        log(f"\n{layer} N={N} K={K}: ms (x BF16), kernel")
        for row in rows.itertuples():
            if row.status != "ok":
                log(f"  M={row.M:<5} {row.provider:<22} {row.status}: {row.reason}")
                continue
            ratio = bf16.get(row.M, float("nan")) / row.ms_median
            log(f"  M={row.M:<5} {row.provider:<22} {row.ms_median:9.4f} ms ({ratio:5.2f}x) "
                f"err {row.check_rel_err:.2e} {row.kernel}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
