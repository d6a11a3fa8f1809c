"""Timing one call: vLLM's CUDA-graph timer (warm L2), a cold-L2 timer, or wall clock on CPU;
stopping after a fixed time (as vLLM's benchmark) or once the median is stable (adaptive)."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

QUANTILES = (0.5, 0.2, 0.8)

# Adaptive stopping, as nvbench's: a row stops once the noise of its median is under
# `max_noise` after at least MIN_SAMPLES samples and MIN_MS of measured time, or at the time a
# fixed-mode measurement would take. On the GPU a sample is one replay of a CUDA graph of about
# SAMPLE_MS of calls.
MIN_SAMPLES = 10
MIN_MS = 20.0
SAMPLE_MS = 2.0
# Back-to-back load before the first GPU sample: short bursts run at boost clocks that sustained
# load (and vLLM's fixed 10 x 200 ms) does not get (H100, benchmarks/NOTES.md).
LOAD_WARMUP_MS = 300.0
# triton's do_bench_cudagraph replays its graph of `rep` ms of calls this many times.
CUDAGRAPH_RETRIES = 10
STOPPING = ("adaptive", "fixed")
# Fixed CPU timing: rep_ms of calls, and never fewer than this many.
CPU_MIN_REPS = 5


@dataclass(frozen=True)
class Timed:
    """Milliseconds per call (median, p20, p80), how many calls were timed, and the noise of the
    median (relative standard error). Both None where triton's timers do not expose their
    samples."""

    median: float
    p20: float
    p80: float
    calls: int | None
    noise: float | None


def median_noise(samples: Sequence[float]) -> float:
    """Relative standard error of the sample median: sqrt(pi / 2) * stdev / sqrt(n) / median (the
    large-sample law for normal data). Infinite below two samples."""
    n = len(samples)
    if n < 2:
        return math.inf
    values = np.asarray(samples, dtype=np.float64)
    median = float(np.median(values))
    return math.sqrt(math.pi / 2) * float(values.std(ddof=1)) / math.sqrt(n) / median


def should_stop(
    samples: Sequence[float], elapsed_ms: float, max_noise: float, cap_ms: float
) -> bool:
    """The adaptive rule: stop at `cap_ms` of measured time, or once the median is stable."""
    if elapsed_ms >= cap_ms:
        return True
    return (
        len(samples) >= MIN_SAMPLES and elapsed_ms >= MIN_MS and median_noise(samples) <= max_noise
    )


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


def row_stopping(method: str, stopping: str) -> str:
    """The stopping rule a row of this method gets: cold-L2 rows always stop fixed."""
    return "fixed" if method == "cold-l2" else stopping


def row_methods(
    method: str, M: int, device: torch.device, cold_l2_max_batch_size: int | None
) -> tuple[str, ...]:
    """The timers that time one row at batch size M: the configured method, or under `both`
    warm L2 always and cold L2 as well up to `cold_l2_max_batch_size`. The CPU has one timer."""
    if device.type == "cpu":
        return ("cpu",)
    if method != "both":
        return (method,)
    if cold_l2_max_batch_size is None:
        raise ValueError("timing method both needs cold_l2_max_batch_size")
    return ("cudagraph", "cold-l2") if M <= cold_l2_max_batch_size else ("cudagraph",)


def time_call(
    fn: Callable[[], object],
    device: torch.device,
    method: str,
    rep_ms: float,
    warmup_ms: float | None,
    stopping: str,
    max_noise: float,
) -> Timed:
    """Time fn(). `fixed`: triton's timers with `rep_ms` as vLLM's benchmark calls them (on the CPU
    wall clock for `rep_ms`); `adaptive`: until ``should_stop``, at most as long as fixed would
    take. Cold-L2 timing is always fixed (triton's do_bench)."""
    if stopping not in STOPPING:
        raise ValueError(f"unknown timing stopping rule {stopping!r} (known: {STOPPING})")
    if device.type == "cpu":
        return _time_cpu(fn, rep_ms, stopping, max_noise)
    import triton.testing

    if method == "cudagraph" and stopping == "adaptive":
        return _time_cudagraph_adaptive(fn, CUDAGRAPH_RETRIES * rep_ms, max_noise)
    if method == "cudagraph":
        result = triton.testing.do_bench_cudagraph(fn, rep=rep_ms, quantiles=list(QUANTILES))
    elif method == "cold-l2":
        if warmup_ms is None:
            raise ValueError("cold-l2 timing needs warmup_ms (timing.warmup_ms)")
        result = triton.testing.do_bench(
            fn, warmup=warmup_ms, rep=rep_ms, quantiles=list(QUANTILES)
        )
    else:
        raise ValueError(f"unknown timing method {method!r}")
    return Timed(*(float(v) for v in result), calls=None, noise=None)


def _summary(samples: Sequence[float], calls: int) -> Timed:
    median, p20, p80 = np.quantile(samples, QUANTILES)
    return Timed(float(median), float(p20), float(p80), calls, median_noise(samples))


def _time_cpu(fn: Callable[[], object], rep_ms: float, stopping: str, max_noise: float) -> Timed:
    fn()  # warm-up: first-call allocations and thread start-up stay out of the numbers
    times: list[float] = []
    elapsed = 0.0
    while True:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
        elapsed += times[-1]
        if stopping == "adaptive":
            if should_stop(times, elapsed, max_noise, rep_ms):
                break
        elif len(times) >= CPU_MIN_REPS and elapsed >= rep_ms:
            break
    return _summary(times, len(times))


def _time_cudagraph_adaptive(fn: Callable[[], object], cap_ms: float, max_noise: float) -> Timed:
    """Replays of a CUDA graph of ~SAMPLE_MS of calls (warm L2, as do_bench_cudagraph), one
    sample per replay, until ``should_stop``. The GPU stays busy throughout, as in fixed mode:
    LOAD_WARMUP_MS of back-to-back replays first (so the clocks settle where sustained load puts
    them, under the power cap at large M), then batches of MIN_SAMPLES replays between syncs."""
    with torch.cuda.stream(torch.cuda.Stream()):
        fn()
        torch.cuda.synchronize()
        single = torch.cuda.CUDAGraph()
        with torch.cuda.graph(single):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(5):
            single.replay()
        end.record()
        end.synchronize()
        calls = max(1, round(SAMPLE_MS / max(start.elapsed_time(end) / 5, 1e-4)))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        for _ in range(math.ceil(LOAD_WARMUP_MS / SAMPLE_MS)):
            graph.replay()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(MIN_SAMPLES + 1)]
        samples: list[float] = []
        elapsed = 0.0
        while True:
            events[0].record()
            for event in events[1:]:
                graph.replay()
                event.record()
            events[-1].synchronize()
            for before, after in itertools.pairwise(events):
                ms = before.elapsed_time(after)
                samples.append(ms / calls)
                elapsed += ms
                if should_stop(samples, elapsed, max_noise, cap_ms):
                    return _summary(samples, calls * len(samples))


def tflops(M: int, N: int, K: int, ms: float) -> float:
    return 2.0 * M * N * K / (ms * 1e-3) / 1e12
