"""Warm-L2 (vLLM's do_bench_cudagraph) against cold-L2 (do_bench, L2 flushed) timing of the
pipeline's own sweep, side by side in one process, on one shape.

    python benchmarks/warm_vs_cold_l2.py --shape 8192 8192 --ms 1 16 256 4096 --out warm_cold.tsv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from one_shape_sweep import add_arguments, sweep

from nvfp4bench.io import write_tsv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser, [1, 16, 256, 4096], ["torch-bf16", "nvfp4-triton-noquant"], rep_ms=50)
    parser.add_argument(
        "--warmup-ms", type=float, help="the cold-L2 timer's warm-up (default: the config's)"
    )
    parser.add_argument("--out", type=Path, default=Path("warm_vs_cold_l2.tsv"))
    args = parser.parse_args()
    warmup = {} if args.warmup_ms is None else {"warmup_ms": args.warmup_ms}
    frames = {method: sweep(args, method=method, **warmup) for method in ("cudagraph", "cold-l2")}
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
