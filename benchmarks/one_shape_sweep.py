"""The pipeline's own sweep of one shape on the GPU, for the scripts that time it under two timing
settings side by side (warm_vs_cold_l2.py, adaptive_vs_fixed.py)."""

from __future__ import annotations

import argparse

import pandas as pd

from nvfp4bench.sweep import SweepSettings, run_shape


def add_arguments(
    parser: argparse.ArgumentParser, ms: list[int], providers: list[str], rep_ms: float
) -> None:
    """--shape N K, --ms, --providers, --rep-ms, with these defaults."""
    parser.add_argument("--shape", type=int, nargs=2, metavar=("N", "K"), default=(8192, 8192))
    parser.add_argument("--ms", type=int, nargs="+", default=ms)
    parser.add_argument("--providers", nargs="+", default=providers)
    parser.add_argument("--rep-ms", type=float, default=rep_ms)


def sweep(args: argparse.Namespace, **timing) -> pd.DataFrame:
    """Bench rows of args.shape (had 16) with the given timing settings (SweepSettings fields)."""
    N, K = args.shape
    settings = SweepSettings(
        N=N,
        K=K,
        batch_sizes=tuple(args.ms),
        had_sizes=(16,),
        providers=tuple(args.providers),
        device="cuda",
        rep_ms=args.rep_ms,
        **timing,
    )
    return run_shape(settings)
