"""One shape's sweep: providers x Hadamard sizes x batch sizes -> bench rows.

The providers' rows run in a spawned worker process, one for the whole shape while nothing goes
wrong, so a provider that kills its process (segfault, a CUDA error that poisons the context, an
assert in an extension) costs only the row it was measuring: the parent records that row as
failed and starts a fresh worker for the rest. (With a worker per provider, each provider's
time on the H100 had about 14 s beyond its prepare, check and timing: start-up, five times a
shape.) Every result is checked against a float64 reference before it is timed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import pandas as pd
import torch

from . import envinfo, timing
from .io import BENCH_COLUMNS
from .kernels.tuning import tuning_rep_ms_set_to
from .providers import availability, get_provider
from .providers.requirements import compute_capability

# Sent by a worker after an error that may have poisoned its CUDA context: start a fresh one.
_RESTART = "restart"


# Size of the sample of output rows x columns checked against the float64 reference.
CHECK_ROWS = 64
CHECK_COLS = 256


@dataclass(frozen=True)
class SweepSettings:
    """One shape's sweep. Every field but N and K is a bench param of the same name
    (``config.bench_params``); the defaults are the config schema's, none are written here."""

    N: int
    K: int
    batch_sizes: tuple[int, ...]
    had_sizes: tuple[int, ...]
    providers: tuple[str, ...]
    device: str  # resolved: "cpu" or "cuda"
    timing_method: str
    rep_ms: float
    stopping: str
    max_noise: float
    warmup_ms: float | None  # cold-L2 timing only
    cold_l2_max_batch_size: int | None  # timing method "both" only
    tuning_rep_ms: float | None  # None: the kernel tuner's default
    row_timeout_s: float
    seed: int

    @classmethod
    def from_params(cls, N: int, K: int, params: dict) -> SweepSettings:
        """The settings of shape (N, K) from a bench job's params, field by field."""
        fields = {name: tuple(v) if isinstance(v, list) else v for name, v in params.items()}
        return cls(N=N, K=K, **fields)


@dataclass(frozen=True)
class RowKey:
    provider: str
    had_size: int | None
    M: int
    method: str  # the timer (timing.METHODS)


def plan(settings: SweepSettings) -> list[RowKey]:
    """Every row the sweep will write, in order. Had-independent providers get one row per M;
    under timing method "both" the small batch sizes get a cold-L2 row after the warm one."""
    device = torch.device(settings.device)
    keys = []
    for name in settings.providers:
        provider = get_provider(name)
        had_sizes = settings.had_sizes if provider.uses_had_size else (None,)
        keys += [
            RowKey(name, had, M, method)
            for had in had_sizes
            for M in settings.batch_sizes
            for method in timing.row_methods(
                settings.timing_method, M, device, settings.cold_l2_max_batch_size
            )
        ]
    return keys


def _row(settings: SweepSettings, key: RowKey, status: str, reason: str = "", **values) -> dict:
    row = dict.fromkeys(BENCH_COLUMNS, None)
    row.update(
        N=settings.N,
        K=settings.K,
        M=key.M,
        provider=key.provider,
        had_size=key.had_size,
        status=status,
        reason=" ".join(reason.split()),  # one line, whatever the exception said
        kernel="",
        timing=timing.method_label(torch.device(settings.device), key.method),
        stopping=timing.row_stopping(key.method, settings.stopping),
        gpu_throttle="",
        gpu=envinfo.gpu_identity(torch.device(settings.device)),
    )
    row.update(values)
    return row


def run_shape(settings: SweepSettings, seconds: dict | None = None) -> pd.DataFrame:
    """Every planned row. `seconds`, if given, gets where the time went, per provider: "wall"
    (its rows in the worker, from start to end), "prepare" (building the call, kernel tuning
    included), "check" (the float64 comparison) and "timing" (the timer), summed over its rows
    (the rest of "wall" is making the operands); and under WORKER_STARTUP, "wall" (the rest of
    the sweep: starting the worker processes, importing, CUDA start-up) and "processes"."""
    keys = plan(settings)
    reasons = availability(list(settings.providers), torch.device(settings.device))
    rows: dict[RowKey, dict] = {}
    to_run: list[RowKey] = []  # in plan order: each provider's rows together
    for key in keys:
        if reasons[key.provider]:
            rows[key] = _row(settings, key, "skipped", reasons[key.provider])
        elif key.had_size and settings.K % key.had_size:
            reason = f"K={settings.K} is not a multiple of had_size={key.had_size}"
            rows[key] = _row(settings, key, "skipped", reason)
        else:
            to_run.append(key)
    spent: dict[str, dict] = {}
    started = time.perf_counter()
    running = [get_provider(name) for name in dict.fromkeys(key.provider for key in to_run)]
    with _prebuilding(running, torch.device(settings.device)):
        processes = _run_isolated(settings, to_run, rows, spent) if to_run else 0
    if seconds is not None:
        for name, parts in spent.items():
            seconds[name] = {part: round(value, 3) for part, value in parts.items()}
        rest = time.perf_counter() - started - sum(parts["wall"] for parts in spent.values())
        seconds[WORKER_STARTUP] = {"wall": round(rest, 3), "processes": processes}
    return pd.DataFrame([rows[key] for key in keys], columns=BENCH_COLUMNS)


WORKER_STARTUP = "worker start-up"  # a key of run_shape's `seconds` beside the provider names


# Background processes for the providers' prebuild jobs: half the CPUs this job may use (a SLURM
# job's share, not the node's), so that the worker that is timing and Triton's own compiles keep
# theirs.
PREBUILD_PROCESSES = max(1, len(os.sched_getaffinity(0)) // 2 - 1)


@contextlib.contextmanager
def _prebuilding(providers, device: torch.device):
    """Runs the providers' prebuild jobs in background processes (in the providers' order) while
    the block runs; jobs not started by its end are dropped (the providers do that work
    themselves)."""
    capability = compute_capability(device)
    prebuilds = dict.fromkeys(p.prebuild for p in providers if p.prebuild and capability)
    jobs = [job for prebuild in prebuilds for job in prebuild(capability)]  # a pair shares one
    if not jobs:
        yield
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(min(PREBUILD_PROCESSES, len(jobs)), mp_context=context)
    try:
        for job in jobs:
            pool.submit(job)
        yield
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _run_isolated(
    settings: SweepSettings, keys: list[RowKey], results: dict[RowKey, dict], spent: dict
) -> int:
    """Run the rows in a worker process, in order, into `results`; a dead worker fails only its
    current row and a fresh one takes the rest. Adds each row's seconds per part to
    `spent[provider]`. Returns how many worker processes ran."""
    context = multiprocessing.get_context("spawn")
    remaining = list(keys)
    processes = 0
    while remaining:
        processes += 1
        receiver, sender = context.Pipe(duplex=False)
        worker = context.Process(
            target=_worker, args=(asdict(settings), remaining, sender), daemon=True
        )
        worker.start()
        sender.close()
        death = None
        while True:
            if not receiver.poll(settings.row_timeout_s):
                worker.kill()
                death = f"timed out after {settings.row_timeout_s:g} s"
                break
            try:
                message = receiver.recv()
            except EOFError:
                worker.join()
                death = _describe_exit(worker.exitcode)
                break
            if message is None or message == _RESTART:
                break
            key, row, seconds = message
            results[key] = row
            parts = spent.setdefault(key.provider, dict.fromkeys(seconds, 0.0))
            for part, value in seconds.items():
                parts[part] += value
        worker.join()
        receiver.close()
        remaining = [key for key in remaining if key not in results]
        if death and remaining:
            lost = remaining.pop(0)
            reason = f"worker process died ({death}) while measuring this row"
            results[lost] = _row(settings, lost, "failed", reason)
    return processes


class _Stopwatch:
    """``with clock("part"):`` adds the block's seconds to ``seconds["part"]`` (if a dict)."""

    def __init__(self, seconds: dict | None):
        self.seconds = seconds

    @contextlib.contextmanager
    def __call__(self, part: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.seconds is not None:
                self.seconds[part] += time.perf_counter() - started


def _sample(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)[: min(n, size)].sort().values


def _worker(settings_dict: dict, keys: list[RowKey], conn) -> None:
    settings = SweepSettings(**settings_dict)
    device = torch.device(settings.device)
    generator = torch.Generator(device).manual_seed(settings.seed)
    weight = torch.randn(settings.N, settings.K, generator=generator, device=device)
    weight = weight.to(torch.bfloat16)
    checked: dict = {}
    for key in keys:
        seconds = {"wall": 0.0, "prepare": 0.0, "check": 0.0, "timing": 0.0}
        started = time.perf_counter()
        provider = get_provider(key.provider)
        row, poisoned = _measure(settings, provider, key, weight, device, checked, seconds)
        seconds["wall"] = time.perf_counter() - started
        conn.send((key, row, seconds))
        if poisoned:
            conn.send(_RESTART)
            return
    conn.send(None)


def _measure(
    settings, provider, key: RowKey, weight, device, checked: dict, seconds: dict | None = None
) -> tuple[dict, bool]:
    """One row; returns (row, whether the process should be replaced). `checked` holds the last
    prepared and checked call, which the next row of the same problem timed by another method
    reuses; `seconds` (if given) gets the seconds of its prepare, check and timing."""
    from .numerics import relative_error

    clock = _Stopwatch(seconds)
    problem = (key.provider, key.had_size, key.M)
    prepared = None
    try:
        if problem in checked:
            prepared, error = checked[problem]
        else:
            checked.clear()
            generator = torch.Generator(device).manual_seed(settings.seed + key.M)
            a = torch.randn(key.M, settings.K, generator=generator, device=device)
            try:
                with tuning_rep_ms_set_to(settings.tuning_rep_ms), clock("prepare"):
                    prepared = provider.prepare(a.to(torch.bfloat16), weight, key.had_size)
            except ValueError as error:  # the provider does not support this input
                return _row(settings, key, "skipped", str(error)), False
            with clock("check"):
                out = prepared.run()
            check = torch.Generator().manual_seed(settings.seed)
            rows = _sample(key.M, CHECK_ROWS, check)
            cols = _sample(settings.N, CHECK_COLS, check)
            with clock("check"):
                expected = prepared.reference(rows.to(device), cols.to(device))
                error = relative_error(out[rows.to(device)][:, cols.to(device)], expected)
            if not error <= prepared.tolerance:  # NaN fails too
                reason = f"wrong result (rel err {error:.3g} > {prepared.tolerance:g})"
                row = _row(
                    settings, key, "failed", reason, check_rel_err=error, kernel=prepared.kernel
                )
                return row, False
            checked[problem] = (prepared, error)
        with clock("timing"):
            timed = timing.time_call(
                prepared.run,
                device,
                key.method,
                settings.rep_ms,
                settings.warmup_ms,
                settings.stopping,
                settings.max_noise,
            )
    except torch.OutOfMemoryError as oom:
        del prepared
        checked.clear()
        torch.cuda.empty_cache()
        first_line = str(oom).splitlines()[0] if str(oom) else ""
        return _row(settings, key, "failed", f"out of memory: {first_line}"), False
    except Exception as error:
        # A CUDA error can leave the context unusable: let a fresh process take the next rows.
        reason = f"{type(error).__name__}: {error}"
        return _row(settings, key, "failed", reason), device.type == "cuda"
    state = envinfo.gpu_state(device) or {}
    ms = (timed.median, timed.p20, timed.p80)
    flops = [timing.tflops(key.M, settings.N, settings.K, t) for t in ms]
    row = _row(
        settings,
        key,
        "ok",
        ms_median=ms[0],
        ms_p20=ms[1],
        ms_p80=ms[2],
        tflops_median=flops[0],
        tflops_p20=flops[2],  # 20th percentile of throughput = at the 80th percentile time
        tflops_p80=flops[1],
        samples=timed.calls,
        noise=timed.noise,
        check_rel_err=error,
        gpu_throttle=",".join(state.get("throttle_reasons", [])),
        kernel=prepared.kernel,
    )
    return row, False
