"""Adaptive stopping against vLLM's fixed timing (do_bench_cudagraph, rep 200 ms), on the
pipeline's own sweep, side by side in one process: fixed twice (its run-to-run spread), then
adaptive twice.

    python benchmarks/adaptive_vs_fixed.py --shape 8192 8192 --ms 1 16 64 256 4096 --out DIR

Writes DIR/adaptive_vs_fixed_n{N}_k{K}.tsv (one row per provider and M: each run's median, the
adaptive rows' samples and noise) and prints the largest deviations and each run's seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from one_shape_sweep import add_arguments, sweep

from nvfp4bench.io import write_tsv

RUNS = (("fixed", 1), ("fixed", 2), ("adaptive", 1), ("adaptive", 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, [1, 16, 64, 256, 4096], ["torch-bf16", "nvfp4-cuda-noquant"], rep_ms=200)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    N, K = args.shape
    merged, seconds = None, {}
    for stopping, run in RUNS:
        started = time.perf_counter()
        frame = sweep(args, stopping=stopping)
        seconds[f"{stopping}{run}"] = round(time.perf_counter() - started, 1)
        frame = frame[frame["status"] == "ok"][["provider", "M", "ms_median", "samples", "noise"]]
        frame = frame.rename(columns={c: f"{c}_{stopping}{run}" for c in frame.columns[2:]})
        merged = frame if merged is None else merged.merge(frame, on=["provider", "M"])
    merged = merged.drop(
        columns=["samples_fixed1", "noise_fixed1", "samples_fixed2", "noise_fixed2"]
    )
    base = merged["ms_median_fixed1"]
    merged["fixed2_over_fixed1"] = merged["ms_median_fixed2"] / base
    merged["adaptive1_over_fixed1"] = merged["ms_median_adaptive1"] / base
    merged["adaptive2_over_fixed1"] = merged["ms_median_adaptive2"] / base
    args.out.mkdir(parents=True, exist_ok=True)
    write_tsv(merged, args.out / f"adaptive_vs_fixed_n{N}_k{K}.tsv")
    with pd.option_context("display.width", 200):
        print(merged.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    spread = (merged["fixed2_over_fixed1"] - 1).abs().max()
    adaptive = (merged[["adaptive1_over_fixed1", "adaptive2_over_fixed1"]] - 1).abs().max().max()
    print(f"N={N} K={K}: fixed run-to-run max |dev| {spread:.4f}; adaptive vs fixed {adaptive:.4f}")
    print(f"seconds per run (including tuning on the first): {seconds}")


if __name__ == "__main__":
    main()
