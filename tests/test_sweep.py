import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from nvfp4bench import config as cfg
from nvfp4bench import sweep
from nvfp4bench.io import BENCH_COLUMNS
from nvfp4bench.sweep import SweepSettings, plan, run_shape

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def settings(**overrides):
    """A CPU sweep of 256 x 512 with the config's defaults, as a bench job gets it."""
    config = {
        "models": ["unused"],
        "tp_sizes": [1],
        "had_sizes": [16, 32],
        "batch_sizes": [1, 4, 16],
        "providers": ["torch-bf16"],
        "device": "cpu",
        "cpu": {"rep_ms": 5.0},
    }
    cfg.check_schema(config, SCHEMA)
    base = SweepSettings.from_params(256, 512, cfg.bench_params(config, "cpu"))
    return dataclasses.replace(base, **overrides)


def by_key(frame: pd.DataFrame) -> dict:
    return {
        (r.provider, None if pd.isna(r.had_size) else int(r.had_size), r.M): r
        for r in frame.itertuples()
    }


def test_plan_times_had_independent_providers_once_per_m():
    keys = plan(settings(providers=("torch-bf16", "nvfp4", "nvfp4-noquant")))
    assert [(k.provider, k.had_size) for k in keys].count(("torch-bf16", None)) == 3
    assert [(k.provider, k.had_size) for k in keys].count(("nvfp4-noquant", None)) == 3
    assert sorted({k.had_size for k in keys if k.provider == "nvfp4"}) == [16, 32]


def test_cpu_sweep_rows_schema_and_values():
    frame = run_shape(settings(providers=("torch-bf16", "nvfp4")))
    assert list(frame.columns) == BENCH_COLUMNS
    bf16 = frame[frame["provider"] == "torch-bf16"]
    assert (bf16["status"] == "ok").all()
    assert bf16["had_size"].isna().all()
    assert (bf16["ms_p20"] <= bf16["ms_median"]).all() and (
        bf16["ms_median"] <= bf16["ms_p80"]
    ).all()
    flops = 2 * bf16["M"] * 256 * 512
    assert ((flops / (bf16["ms_median"] * 1e-3) / 1e12 - bf16["tflops_median"]).abs() < 1e-12).all()
    assert (bf16["tflops_p20"] <= bf16["tflops_p80"]).all()
    assert (bf16["check_rel_err"] < 1e-2).all()
    assert (bf16["timing"] == "cpu-wall").all()
    # each row says how it stopped, how many calls it timed and how noisy its median is
    assert (bf16["stopping"] == "fixed").all() and (bf16["samples"] >= 2).all()
    # a loaded machine can make one CPU sample many times the median, so only the bounds hold
    assert (np.isfinite(bf16["noise"]) & (bf16["noise"] > 0)).all()
    nvfp4 = frame[frame["provider"] == "nvfp4"]
    assert (nvfp4["status"] == "skipped").all()
    assert nvfp4["reason"].str.contains("compute capability").all()
    assert nvfp4["ms_median"].isna().all()


def test_had_size_not_dividing_k_is_skipped_with_reason_rest_runs():
    frame = run_shape(
        settings(K=15 * 16, providers=("test-oom",), had_sizes=(16, 32), batch_sizes=(1,))
    )
    rows = by_key(frame)
    assert rows[("test-oom", 16, 1)].status == "ok"
    assert rows[("test-oom", 32, 1)].status == "skipped"
    assert "not a multiple of had_size=32" in rows[("test-oom", 32, 1)].reason


def test_a_crashing_provider_loses_only_its_row():
    frame = run_shape(settings(providers=("test-crash", "torch-bf16")))
    rows = by_key(frame)
    crashed = rows[("test-crash", None, 4)]
    assert crashed.status == "failed"
    assert "SIGSEGV" in crashed.reason and "died" in crashed.reason
    assert rows[("test-crash", None, 1)].status == "ok"
    assert rows[("test-crash", None, 16)].status == "ok"  # measured by a fresh worker
    assert all(rows[("torch-bf16", None, m)].status == "ok" for m in (1, 4, 16))


def test_wrong_result_is_failed_not_timed():
    frame = run_shape(settings(providers=("test-wrong",), batch_sizes=(4,)))
    row = frame.iloc[0]
    assert row.status == "failed"
    assert row.reason.startswith("wrong result (rel err")
    assert 0.05 < row.check_rel_err < 0.15
    assert pd.isna(row.ms_median) and pd.isna(row.tflops_median)


def test_out_of_memory_fails_its_row_and_the_sweep_goes_on():
    frame = run_shape(settings(providers=("test-oom",), had_sizes=(16,)))
    rows = by_key(frame)
    assert rows[("test-oom", 16, 16)].status == "failed"
    assert rows[("test-oom", 16, 16)].reason.startswith("out of memory: CUDA out of memory")
    assert rows[("test-oom", 16, 1)].status == "ok" and rows[("test-oom", 16, 4)].status == "ok"


def test_unsupported_input_is_skipped_with_the_providers_reason():
    frame = run_shape(settings(providers=("test-unsupported",), batch_sizes=(1,)))
    assert frame.iloc[0].status == "skipped"
    assert "K=512 is not supported" in frame.iloc[0].reason


def test_hung_row_times_out():
    frame = run_shape(settings(providers=("test-crash",), batch_sizes=(1,), row_timeout_s=0.01))
    # The worker cannot even start within 10 ms: the row is failed as timed out, not lost.
    assert frame.iloc[0].status == "failed"
    assert "timed out after 0.01 s" in frame.iloc[0].reason


def test_method_both_plans_a_cold_l2_row_after_the_warm_one_up_to_its_batch_size():
    gpu = settings(device="cuda", timing_method="both", cold_l2_max_batch_size=4)
    keys = [(k.provider, k.M, k.method) for k in plan(gpu)]
    assert keys == [("torch-bf16", 1, "cudagraph"), ("torch-bf16", 1, "cold-l2"),
                    ("torch-bf16", 4, "cudagraph"), ("torch-bf16", 4, "cold-l2"),
                    ("torch-bf16", 16, "cudagraph")]  # fmt: skip
    # the CPU has one timer, whatever the method
    cpu = settings(timing_method="both", cold_l2_max_batch_size=4)
    assert {k.method for k in plan(cpu)} == {"cpu"}


def test_each_row_is_timed_by_its_own_method_and_says_so(monkeypatch):
    """With a fake timer: the warm and cold rows of one problem are checked once, timed by their
    own method, and labelled with it (cold-L2 rows always stop fixed)."""
    import torch

    from nvfp4bench import sweep, timing
    from nvfp4bench.providers import get_provider

    calls = []

    def fake_time_call(fn, device, method, rep_ms, warmup_ms, stopping, max_noise):
        calls.append(method)
        ms = {"cudagraph": 1.0, "cold-l2": 1.5}[method]
        return timing.Timed(ms, ms, ms, calls=None, noise=None)

    prepares = []
    provider = get_provider("torch-bf16")
    counting = dataclasses.replace(
        provider, prepare=lambda *args: prepares.append(1) or provider.prepare(*args)
    )
    monkeypatch.setattr(timing, "time_call", fake_time_call)
    monkeypatch.setattr(timing, "method_label", lambda device, method: timing.METHODS[method])
    run = settings(timing_method="both", cold_l2_max_batch_size=4, stopping="adaptive")
    weight = torch.randn(256, 512).to(torch.bfloat16)
    checked = {}
    rows = [
        sweep._measure(run, counting, sweep.RowKey("torch-bf16", None, 4, method), weight,
                       torch.device("cpu"), checked)[0]
        for method in ("cudagraph", "cold-l2")
    ]  # fmt: skip
    assert calls == ["cudagraph", "cold-l2"] and len(prepares) == 1
    assert [r["timing"] for r in rows] == ["cudagraph-warm-l2", "events-cold-l2"]
    assert [r["stopping"] for r in rows] == ["adaptive", "fixed"]
    assert [r["ms_median"] for r in rows] == [1.0, 1.5]


def _touch(path):
    Path(path).write_text("built")


def _fail():
    raise RuntimeError("this job fails; the provider builds for itself")


def test_prebuild_jobs_run_in_the_background_while_the_sweep_times(monkeypatch, tmp_path):
    import functools
    import time

    import torch

    from nvfp4bench import sweep
    from nvfp4bench.providers import get_provider

    seen = []

    def prebuild(capability):
        seen.append(capability)
        return [_fail, *(functools.partial(_touch, tmp_path / f"kernel{i}") for i in range(3))]

    with_prebuild = dataclasses.replace(get_provider("torch-bf16"), prebuild=prebuild)
    monkeypatch.setattr(sweep, "compute_capability", lambda device: (9, 0))
    providers = [with_prebuild, get_provider("nvfp4"), with_prebuild]  # a pair: built once
    with sweep._prebuilding(providers, torch.device("cpu")):
        deadline = time.monotonic() + 60
        while len(list(tmp_path.iterdir())) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert seen == [(9, 0)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel0", "kernel1", "kernel2"]


def test_the_sweep_says_where_each_providers_time_went():
    seconds = {}
    run_shape(settings(providers=("torch-bf16", "test-oom")), seconds)
    assert seconds["torch-bf16"]["timing"] >= 3 * 5e-3  # three rows of at least rep_ms (5 ms)
    for name in ("torch-bf16", "test-oom"):
        parts = seconds[name]
        assert set(parts) == {"wall", "prepare", "check", "timing"}
        assert parts["wall"] >= parts["prepare"] + parts["check"] + parts["timing"]
    # Both providers' rows ran in one worker process, whose start-up is counted apart.
    assert seconds[sweep.WORKER_STARTUP]["processes"] == 1
    assert seconds[sweep.WORKER_STARTUP]["wall"] > 0


def test_a_crash_costs_one_fresh_worker_for_the_rows_after_it():
    seconds = {}
    frame = run_shape(settings(providers=("test-crash", "torch-bf16")), seconds)
    assert (frame["status"] == "ok").sum() == len(frame) - 1
    assert seconds[sweep.WORKER_STARTUP]["processes"] == 2
