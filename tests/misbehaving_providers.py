"""Providers that misbehave on purpose, to test that the sweep survives them."""

import os
import signal

import torch
import torch.nn.functional as F

from nvfp4bench.providers.base import Prepared, Provider


def _bf16_reference(a, b):
    return lambda rows, cols: a[rows].double() @ b[cols].double().T


def _crash_at_m4(a, b, had_size):
    if a.shape[0] == 4:
        os.kill(os.getpid(), signal.SIGSEGV)
    return Prepared(lambda: F.linear(a, b), _bf16_reference(a, b), 1e-2)


def _wrong(a, b, had_size):
    return Prepared(lambda: F.linear(a, b) * 1.1, _bf16_reference(a, b), 1e-2)


def _oom_at_m16(a, b, had_size):
    if a.shape[0] == 16:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
    return Prepared(lambda: F.linear(a, b), _bf16_reference(a, b), 1e-2)


def _unsupported(a, b, had_size):
    raise ValueError(f"K={a.shape[1]} is not supported by this test provider")


def _provider(name, prepare, uses_had_size=False):
    return Provider(name, "test", uses_had_size, lambda device: None, prepare)


PROVIDERS = [
    _provider("test-crash", _crash_at_m4),
    _provider("test-wrong", _wrong),
    _provider("test-oom", _oom_at_m16, uses_had_size=True),
    _provider("test-unsupported", _unsupported),
]


def _slow(a, b, had_size):
    # Slow enough (3 s a row) for the interruption tests to catch a bench job mid-sweep.
    import time

    time.sleep(3)
    return Prepared(lambda: F.linear(a, b), _bf16_reference(a, b), 1e-2)


PROVIDERS.append(_provider("test-slow", _slow))
