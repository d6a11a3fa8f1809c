"""Warm-L2 (the seed's do_bench_cudagraph) against cold-L2 (do_bench, L2 flushed) timing of the
pipeline's own sweep, side by side in one process, on one shape.

    python benchmarks/warm_vs_cold_l2.py --shape 8192 8192 --ms 1 16 256 4096 --out warm_cold.tsv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from nvfp4bench.io import write_tsv
from nvfp4bench.sweep import SweepSettings, run_shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", type=int, nargs=2, metavar=("N", "K"), default=(8192, 8192))
    parser.add_argument("--ms", type=int, nargs="+", default=[1, 16, 256, 4096])
    parser.add_argument("--providers", nargs="+", default=["torch-bf16", "nvfp4-triton-noquant"])
    parser.add_argument("--rep-ms", type=float, default=50)
    parser.add_argument("--warmup-ms", type=float, default=25, help="the cold-L2 timer's warm-up")
    parser.add_argument("--out", type=Path, default=Path("warm_vs_cold_l2.tsv"))
    args = parser.parse_args()
    N, K = args.shape
    frames = {}
    for method in ("cudagraph", "cold-l2"):
        settings = SweepSettings(
            N=N,
            K=K,
            batch_sizes=tuple(args.ms),
            had_sizes=(16,),
            providers=tuple(args.providers),
            device="cuda",
            timing_method=method,
            rep_ms=args.rep_ms,
            warmup_ms=args.warmup_ms if method == "cold-l2" else None,
        )
        frames[method] = run_shape(settings)
    keys = ["provider", "M"]
    table = frames["cudagraph"][[*keys, "ms_median", "status"]].merge(
        frames["cold-l2"][[*keys, "ms_median", "status"]], on=keys, suffixes=("_warm", "_cold")
    )
    table["cold_over_warm"] = table["ms_median_cold"] / table["ms_median_warm"]
    write_tsv(table, args.out)
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format="%.4g"))


if __name__ == "__main__":
    main()
