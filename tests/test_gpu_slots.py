"""GPU slots with a simulated list of GPUs: exclusive, returned on death, waited for."""

import multiprocessing
import os
import signal
import time

import pytest

from nvfp4bench.gpu_slots import gpu_slot, visible_gpus

GPUS = ["0", "1", "2"]


def _hold(lock_dir, gpus, held, release, ready):
    with gpu_slot(gpus, lock_dir=lock_dir, poll_s=0.01) as gpu:
        held.put((gpu, os.environ["CUDA_VISIBLE_DEVICES"]))
        ready.set()
        release.wait(30)


def _start(context, lock_dir, gpus, held, release):
    ready = context.Event()
    process = context.Process(target=_hold, args=(lock_dir, gpus, held, release, ready))
    process.start()
    return process, ready


@pytest.fixture
def context():
    return multiprocessing.get_context("spawn")


def test_concurrent_jobs_never_share_a_slot(tmp_path, context):
    held, release = context.Queue(), context.Event()
    jobs = [_start(context, tmp_path, GPUS, held, release) for _ in GPUS]
    for _, ready in jobs:
        assert ready.wait(60)
    taken = [held.get(timeout=5) for _ in GPUS]
    assert sorted(gpu for gpu, _ in taken) == GPUS
    assert all(gpu == visible for gpu, visible in taken)  # CUDA_VISIBLE_DEVICES = the slot
    release.set()
    for process, _ in jobs:
        process.join(30)
        assert process.exitcode == 0


def test_more_jobs_than_gpus_wait_and_a_killed_jobs_slot_comes_back(tmp_path, context):
    # The killed job gets its own event: a process killed while waiting on a shared Event
    # would leave that Event's condition waiting for it forever.
    held, never, release = context.Queue(), context.Event(), context.Event()
    first, first_ready = _start(context, tmp_path, ["0"], held, never)
    assert first_ready.wait(60)
    assert held.get(timeout=5)[0] == "0"
    second, second_ready = _start(context, tmp_path, ["0"], held, release)
    assert not second_ready.wait(3)  # waits while the only GPU is taken
    os.kill(first.pid, signal.SIGKILL)  # no clean-up code runs
    first.join(10)
    assert second_ready.wait(30)  # the kernel released the dead job's lock
    assert held.get(timeout=5)[0] == "0"
    release.set()
    second.join(30)
    assert second.exitcode == 0


def test_slot_restores_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    with gpu_slot(lock_dir=tmp_path) as gpu:
        assert gpu == "4" and os.environ["CUDA_VISIBLE_DEVICES"] == "4"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"


def test_a_released_slot_is_taken_again_in_the_same_process(tmp_path):
    start = time.monotonic()
    for _ in range(3):
        with gpu_slot(["7"], lock_dir=tmp_path) as gpu:
            assert gpu == "7"
    assert time.monotonic() - start < 5


def test_visible_gpus_honours_a_preset_list(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3,GPU-abc")
    assert visible_gpus() == ["2", "3", "GPU-abc"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    with pytest.raises(RuntimeError, match="no GPU is visible"):
        with gpu_slot([]):
            pass
