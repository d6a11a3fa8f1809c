"""Timing one call: the seed's CUDA-graph timer (warm L2), a cold-L2 timer, or wall clock on CPU."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

QUANTILES = (0.5, 0.2, 0.8)

# What each method measures, recorded in every TSV row.
METHODS = {
    # triton do_bench_cudagraph: replays a CUDA graph; L2 is never flushed.
    "cudagraph": "cudagraph-warm-l2",
    # triton do_bench: zeroes a 256 MB buffer (flushing L2) before each timed call.
    "cold-l2": "events-cold-l2",
    "cpu": "cpu-wall",
}


def method_label(device: torch.device, method: str) -> str:
    return METHODS["cpu"] if device.type == "cpu" else METHODS[method]


def time_call(
    fn: Callable[[], object],
    device: torch.device,
    method: str,
    rep_ms: float,
    warmup_ms: float,
) -> tuple[float, float, float]:
    """(median, p20, p80) time of fn() in milliseconds."""
    if device.type == "cpu":
        return _time_cpu(fn, rep_ms)
    import triton.testing

    if method == "cudagraph":
        result = triton.testing.do_bench_cudagraph(fn, rep=rep_ms, quantiles=list(QUANTILES))
    elif method == "cold-l2":
        result = triton.testing.do_bench(
            fn, warmup=warmup_ms, rep=rep_ms, quantiles=list(QUANTILES)
        )
    else:
        raise ValueError(f"unknown timing method {method!r}")
    return tuple(float(v) for v in result)


def _time_cpu(
    fn: Callable[[], object], rep_ms: float, min_reps: int = 5
) -> tuple[float, float, float]:
    fn()  # warm-up: first-call allocations and thread start-up stay out of the numbers
    times: list[float] = []
    deadline = time.perf_counter() + rep_ms / 1000
    while len(times) < min_reps or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    median, p20, p80 = np.quantile(times, QUANTILES)
    return float(median), float(p20), float(p80)


def tflops(M: int, N: int, K: int, ms: float) -> float:
    return 2.0 * M * N * K / (ms * 1e-3) / 1e12
