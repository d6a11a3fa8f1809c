"""Check the pipeline's numbers on a GPU, in the same process/run as the pipeline's own results.

1. BF16: for every torch-bf16 row of a results folder, time F.linear with
   triton.testing.do_bench_cudagraph called directly (as vLLM's bench_nvfp4_qutlass.py does),
   print both TFLOP/s.
2. Run-to-run spread: sweep one shape twice with the pipeline's own sweep and compare per row.

    python benchmarks/pipeline_vs_direct.py --results results/nvidia-h100-80gb-hbm3 \
        --repeat-shape 8192 8192 --out bf16_check.tsv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
import triton.testing
from one_shape_sweep import settings

from nvfp4bench.io import read_bench, write_tsv
from nvfp4bench.sweep import run_shape
from nvfp4bench.timing import QUANTILES, tflops


def direct_bf16(results: Path, rep_ms: float) -> pd.DataFrame:
    rows = []
    for path in sorted((results / "bench").glob("n*_k*.tsv")):
        bench = read_bench(path)
        bf16 = bench[(bench["provider"] == "torch-bf16") & (bench["status"] == "ok")]
        if bf16.empty:
            continue
        N, K = int(bf16["N"].iloc[0]), int(bf16["K"].iloc[0])
        b = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
        for row in bf16.itertuples():
            a = torch.randn(row.M, K, device="cuda", dtype=torch.bfloat16)
            ms = triton.testing.do_bench_cudagraph(
                lambda a=a, b=b: F.linear(a, b), rep=rep_ms, quantiles=list(QUANTILES)
            )
            rows.append(
                dict(
                    N=N,
                    K=K,
                    M=row.M,
                    pipeline_tflops=row.tflops_median,
                    direct_tflops=tflops(row.M, N, K, ms[0]),
                )
            )
            del a
        del b
        torch.cuda.empty_cache()
    table = pd.DataFrame(rows)
    table["pipeline_over_direct"] = table["pipeline_tflops"] / table["direct_tflops"]
    return table


def run_to_run(N: int, K: int, batch_sizes: list[int], providers: list[str], rep_ms: float):
    shape = settings(N, K, batch_sizes, providers, rep_ms=rep_ms)
    first, second = run_shape(shape), run_shape(shape)
    keys = ["provider", "had_size", "M"]
    merged = first.merge(second, on=keys, suffixes=("_1", "_2"))
    merged = merged[(merged["status_1"] == "ok") & (merged["status_2"] == "ok")]
    merged["spread_pct"] = 100 * (merged["ms_median_2"] / merged["ms_median_1"] - 1)
    return merged[[*keys, "ms_median_1", "ms_median_2", "spread_pct"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--rep-ms", type=float, default=200)
    parser.add_argument("--repeat-shape", type=int, nargs=2, metavar=("N", "K"))
    parser.add_argument("--repeat-providers", nargs="+", default=["torch-bf16"])
    parser.add_argument("--out", type=Path, default=Path("pipeline_vs_direct.tsv"))
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    table = direct_bf16(args.results, args.rep_ms)
    write_tsv(table, args.out)
    print(table.to_string(index=False, float_format="%.4g"))
    ratio = table["pipeline_over_direct"]
    print(
        f"pipeline/direct BF16 TFLOP/s: median {ratio.median():.3f}, "
        f"min {ratio.min():.3f}, max {ratio.max():.3f} over {len(ratio)} rows"
    )
    if args.repeat_shape:
        N, K = args.repeat_shape
        Ms = sorted(set(table["M"]))
        spread = run_to_run(N, K, Ms, args.repeat_providers, args.rep_ms)
        write_tsv(spread, args.out.with_name(args.out.stem + "_run_to_run.tsv"))
        print(spread.to_string(index=False, float_format="%.4g"))
        print(
            f"run-to-run |spread| %: median {spread['spread_pct'].abs().median():.2f}, "
            f"max {spread['spread_pct'].abs().max():.2f}"
        )


if __name__ == "__main__":
    main()
