"""One GPU per bench job on a multi-GPU node.

Snakemake does not hand jobs GPU ids (snakemake issue #281): with `--resources gpu=8` eight jobs
start at once, all on GPU 0. Each GPU job takes a slot here instead: an exclusive `flock` on one
lock file per visible GPU. The kernel releases a flock when its holder dies, even by SIGKILL, so a
killed job's slot comes back; jobs beyond the GPU count wait for a free slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "nvfp4bench-gpu-slots"


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else all NVML sees."""
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:
        return [gpu.strip() for gpu in preset.split(",") if gpu.strip()]
    import pynvml

    pynvml.nvmlInit()
    return [str(index) for index in range(pynvml.nvmlDeviceGetCount())]


def scheduler_assigned_gpus() -> bool:
    """Under SLURM each job already has its own GPUs (and may see them all as device 0)."""
    return "SLURM_JOB_ID" in os.environ


@contextlib.contextmanager
def gpu_slot(
    gpus: list[str] | None = None,
    lock_dir: Path = DEFAULT_LOCK_DIR,
    poll_s: float = 0.5,
) -> Iterator[str]:
    """Hold one free GPU for the duration; CUDA_VISIBLE_DEVICES names only that GPU meanwhile."""
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus:
        raise RuntimeError("no GPU is visible (CUDA_VISIBLE_DEVICES is empty or NVML sees none)")
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for gpu in gpus:
            handle = open(lock_dir / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            previous = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            try:
                yield gpu
            finally:
                if previous is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = previous
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)
