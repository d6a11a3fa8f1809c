"""Choosing a kernel configuration by timing: the median timer and the pick-the-fastest loop that
the Triton and CUDA kernels share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

Candidate = TypeVar("Candidate")


def time_graph(fn: Callable[[], object], rep_ms: float) -> float:
    """Median ms of fn replayed in a CUDA graph (triton do_bench_cudagraph, the benchmark's own
    timer): no Python launch overhead, which would otherwise decide between small-M configs."""
    import triton.testing

    fn()  # compile outside the capture
    return float(triton.testing.do_bench_cudagraph(fn, rep=rep_ms, return_mode="median"))


def fastest(
    candidates: Iterable[Candidate],
    build: Callable[[Candidate], Callable[[], object]],
    *,
    rep_ms: float = 5.0,
    label: str = "",
    log: Callable[[str], object] | None = None,
) -> tuple[Candidate, Callable[[], object], float]:
    """(candidate, its call, median ms) of the fastest candidate, timed with ``time_graph``.

    ``build(candidate)`` returns the call to time; a candidate whose build or run raises (does not
    fit, fails to compile) is skipped. Raises RuntimeError naming the last error if none ran."""
    best = None
    last_error = "no candidates"
    for candidate in candidates:
        try:
            call = build(candidate)
            ms = time_graph(call, rep_ms)
        except Exception as error:  # noqa: BLE001 - a configuration that does not run is skipped
            last_error = f"{candidate!r}: {type(error).__name__}: {str(error)[:200]}"
            if log:
                log(f"  tune skip {label} {last_error}")
            continue
        if log:
            log(f"  tune {label} {ms * 1e3:9.1f} us  {candidate!r}")
        if best is None or ms < best[2]:
            best = (candidate, call, ms)
    if best is None:
        raise RuntimeError(f"no configuration ran for {label} ({last_error})")
    return best
