"""A bench job: one shape's sweep on its own GPU, with the environment recorded around it."""

from __future__ import annotations

import contextlib
import logging
import time

from . import envinfo, io
from .gpu_slots import gpu_slot, scheduler_assigned_gpus
from .sweep import SweepSettings, run_shape

log = logging.getLogger(__name__)


def run_bench_job(N: int, K: int, params: dict, tsv_path: str, env_path: str) -> None:
    settings = SweepSettings.from_params(N, K, params)
    # Take a GPU before anything initialises CUDA in this process: the slot sets
    # CUDA_VISIBLE_DEVICES, which the workers inherit.
    use_slot = settings.device == "cuda" and not scheduler_assigned_gpus()
    with gpu_slot() if use_slot else contextlib.nullcontext(None) as slot:
        device = envinfo.resolve_device(settings.device)
        record = envinfo.environment(device)
        record.update(
            shape={"N": N, "K": K},
            settings=params,
            config_hash=envinfo.config_hash(params),
            timing_method=settings.timing_method if device.type == "cuda" else "cpu",
            gpu_slot=slot,
            gpu_state_before=envinfo.gpu_state(device),
        )
        log.info("sweep N=%d K=%d on %s (slot %s)", N, K, device, slot)
        started = time.perf_counter()
        record["provider_seconds"] = {}
        rows = run_shape(settings, record["provider_seconds"])
        record["sweep_seconds"] = round(time.perf_counter() - started, 3)
        record["gpu_state_after"] = envinfo.gpu_state(device)
    record["rows"] = rows["status"].value_counts().to_dict()
    io.write_tsv(rows, tsv_path)
    io.write_json(record, env_path)
    log.info("wrote %s: %s", tsv_path, record["rows"])
