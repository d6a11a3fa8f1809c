"""The pipeline's own sweep of one shape on the GPU, for the scripts that time it under two timing
settings side by side (warm_vs_cold_l2.py, adaptive_vs_fixed.py, pipeline_vs_direct.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from nvfp4bench import config as cfg
from nvfp4bench.sweep import SweepSettings, run_shape

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def add_arguments(
    parser: argparse.ArgumentParser, ms: list[int], providers: list[str], rep_ms: float
) -> None:
    """--shape N K, --ms, --providers, --rep-ms, with these defaults."""
    parser.add_argument("--shape", type=int, nargs=2, metavar=("N", "K"), default=(8192, 8192))
    parser.add_argument("--ms", type=int, nargs="+", default=ms)
    parser.add_argument("--providers", nargs="+", default=providers)
    parser.add_argument("--rep-ms", type=float, default=rep_ms)


def settings(
    N: int, K: int, batch_sizes: list[int], providers: list[str], **timing
) -> SweepSettings:
    """A bench job's settings for (N, K) on the GPU at had size 16: the config's defaults (the
    schema's) but for these `timing` keys (timing.method, rep_ms, stopping, ...)."""
    config = {
        "models": ["(one shape)"],  # required by the schema, unused by a bench job
        "tp_sizes": [1],
        "had_sizes": [16],
        "batch_sizes": list(batch_sizes),
        "providers": list(providers),
        "timing": timing,
    }
    cfg.check_schema(config, SCHEMA)
    return SweepSettings.from_params(N, K, cfg.bench_params(config, "cuda"))


def sweep(args: argparse.Namespace, **timing) -> pd.DataFrame:
    """Bench rows of args.shape with the given timing settings (config names) and --rep-ms."""
    N, K = args.shape
    return run_shape(settings(N, K, args.ms, args.providers, rep_ms=args.rep_ms, **timing))
