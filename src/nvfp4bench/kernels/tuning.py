"""Choosing a kernel configuration by timing: the median timer and the pick-the-fastest loop that
the Triton and CUDA kernels share, and the on-disk memory of past choices.

Tuned choices and compiled CUDA kernels live under ``cache_root()``: ``$NVFP4BENCH_CACHE`` if set,
else ``~/.cache/nvfp4bench``. A choice is remembered per GPU model, compute capability, torch and
Triton versions, kernel source and problem size, so a re-run (after ``rm results/*/bench/*``,
say) times no candidates. ``NVFP4BENCH_RETUNE=1`` tunes again and overwrites what is remembered.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from ..io import write_json

Candidate = TypeVar("Candidate")
Choice = TypeVar("Choice")


def cache_root() -> Path:
    return Path(os.environ.get("NVFP4BENCH_CACHE") or Path.home() / ".cache" / "nvfp4bench")


def device_key(device) -> dict:
    """What a tuned choice depends on besides the problem: the GPU and the software."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    major, minor = torch.cuda.get_device_capability(device)
    return {
        "gpu": torch.cuda.get_device_name(device),
        "capability": f"{major}.{minor}",
        "torch": torch.__version__,
        "triton": triton_version,
    }


def source_hash(path: str | Path) -> str:
    """A kernel source's fingerprint: an edited kernel is tuned again."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def remembered(
    key: dict,
    choose: Callable[[], Choice],
    *,
    encode: Callable[[Choice], object] = lambda choice: choice,
    decode: Callable[[object], Choice] = lambda stored: stored,
) -> Choice:
    """``choose()``'s result for ``key``, computed once and kept on disk (JSON, one file per key,
    written atomically so concurrent bench jobs never read half a file)."""
    text = json.dumps(key, sort_keys=True)
    folder = cache_root() / "tuning"
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
    if not os.environ.get("NVFP4BENCH_RETUNE") and path.exists():
        try:
            stored = json.loads(path.read_text())
            if stored["key"] == key:
                return decode(stored["choice"])
        except (ValueError, KeyError, TypeError):
            pass  # unreadable or from another layout: tune again
    choice = choose()
    write_json({"key": key, "choice": encode(choice)}, path)
    return choice


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
