"""Choosing a kernel configuration by timing: the median timer and the pick-the-fastest loop that
the Triton and CUDA kernels share, and the memory of past choices.

Tuned choices and compiled CUDA kernels live under ``cache_root()``: ``$NVFP4BENCH_CACHE`` if set,
else ``~/.cache/nvfp4bench``. A choice is remembered per GPU model, compute capability, torch and
Triton versions, kernel source, problem size and the time spent on each candidate
(``tuning_rep_ms()``), so a re-run (after ``rm results/*/bench/*``, say) times no candidates.
``NVFP4BENCH_RETUNE=1`` tunes again and overwrites what is remembered. Within a process every
in-memory cache of the kernels is a ``process_cache``; ``forget()`` empties them all (tests, or a
benchmark that tunes again).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from ..io import write_json

Candidate = TypeVar("Candidate")
Choice = TypeVar("Choice")

# Milliseconds of CUDA-graph replays that time one candidate, where the config's
# timing.tuning_rep_ms is unset (the sweep sets it around each provider's prepare).
REP_MS = 5.0
_rep_ms: ContextVar[float] = ContextVar("tuning_rep_ms", default=REP_MS)

_PROCESS_CACHES: dict[str, dict] = {}

# Large tuning spaces (the CUDA GEMM's 50-90 configurations per batch size) are screened first:
# each candidate is timed for SCREEN_FRACTION of rep_ms, and only those within SCREEN_KEEP of the
# quickest are timed in full. On the H100 (benchmarks/NOTES.md) 18 % of the CUDA GEMM's candidates
# were within 1.25x of the winner and the runner-up was within 2 % of it half the time, so the
# screen keeps every candidate that could win and leaves the near-ties to the full timing.
SCREEN_ABOVE = 8
SCREEN_FRACTION = 0.1
SCREEN_KEEP = 1.25


def tuning_rep_ms() -> float:
    """The time each candidate is timed for, here and now."""
    return _rep_ms.get()


@contextmanager
def tuning_rep_ms_set_to(rep_ms: float | None) -> Iterator[None]:
    """Tune with `rep_ms` per candidate inside the block (None: ``REP_MS``)."""
    token = _rep_ms.set(REP_MS if rep_ms is None else rep_ms)
    try:
        yield
    finally:
        _rep_ms.reset(token)


def process_cache(name: str) -> dict:
    """This process's cache called `name` (tuned choices, constant tensors): every one lives
    here, so that ``forget()`` empties them all."""
    return _PROCESS_CACHES.setdefault(name, {})


def forget() -> None:
    """Empty every process cache: the next call tunes (or reads the disk) and builds again."""
    for cache in _PROCESS_CACHES.values():
        cache.clear()


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


def source_hash(*paths: str | Path) -> str:
    """Kernel sources' fingerprint: an edited kernel is tuned again."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def remembered(
    key: dict,
    choose: Callable[[], Choice],
    *,
    encode: Callable[[Choice], object] = lambda choice: choice,
    decode: Callable[[object], Choice] = lambda stored: stored,
) -> Choice:
    """``choose()``'s result for ``key`` and the current ``tuning_rep_ms()``, computed once: kept
    for this process and on disk (JSON, one file per key, written atomically so concurrent bench
    jobs never read half a file)."""
    key = {**key, "rep_ms": tuning_rep_ms()}
    text = json.dumps(key, sort_keys=True)
    in_memory = process_cache("tuned")
    if text in in_memory:
        return in_memory[text]
    folder = cache_root() / "tuning"
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
    choice = None
    if not os.environ.get("NVFP4BENCH_RETUNE") and path.exists():
        try:
            stored = json.loads(path.read_text())
            if stored["key"] == key:
                choice = decode(stored["choice"])
        except (ValueError, KeyError, TypeError):
            pass  # unreadable or from another layout: tune again
    if choice is None:
        choice = choose()
        write_json({"key": key, "choice": encode(choice)}, path)
    in_memory[text] = choice
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
    rep_ms: float | None = None,
    label: str = "",
    log: Callable[[str], object] | None = None,
) -> tuple[Candidate, Callable[[], object], float]:
    """(candidate, its call, median ms) of the fastest candidate, each timed with ``time_graph``
    for `rep_ms` (None: ``tuning_rep_ms()``); more than SCREEN_ABOVE candidates are screened
    first (see SCREEN_KEEP).

    ``build(candidate)`` returns the call to time; a candidate whose build or run raises (does not
    fit, fails to compile) is skipped. Raises RuntimeError naming the last error if none ran."""
    rep_ms = tuning_rep_ms() if rep_ms is None else rep_ms
    candidates = list(candidates)
    last_error = ["no candidates"]

    def timed(candidate: Candidate, ms_of_replays: float, stage: str):
        try:
            call = build(candidate)
            ms = time_graph(call, ms_of_replays)
        except Exception as error:  # noqa: BLE001 - a configuration that does not run is skipped
            last_error[0] = f"{candidate!r}: {type(error).__name__}: {str(error)[:200]}"
            if log:
                log(f"  tune skip {label} {last_error[0]}")
            return None
        if log:
            log(f"  {stage} {label} {ms * 1e3:9.1f} us  {candidate!r}")
        return call, ms

    best = None
    finalists = candidates
    if len(candidates) > SCREEN_ABOVE:
        # The first candidate in full: its replays also bring the GPU's clocks up from idle, so
        # the quick pass does not see the first candidates at low clocks.
        first = timed(candidates[0], rep_ms, "tune")
        if first is not None:
            best = (candidates[0], *first)
        screened = []
        for candidate in candidates[1:]:
            result = timed(candidate, rep_ms * SCREEN_FRACTION, "screen")
            if result is not None:  # the call is dropped: only the finalists are built again
                screened.append((candidate, result[1]))
        quickest = min((ms for _, ms in screened), default=math.inf)
        finalists = [candidate for candidate, ms in screened if ms <= SCREEN_KEEP * quickest]
    for candidate in finalists:
        result = timed(candidate, rep_ms, "tune")
        if result is not None and (best is None or result[1] < best[2]):
            best = (candidate, *result)
    if best is None:
        raise RuntimeError(f"no configuration ran for {label} ({last_error[0]})")
    return best
