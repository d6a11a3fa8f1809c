"""The Triton providers on compute capability 10.x: the ``tl.dot_scaled`` GEMM, its contract,
its fallback, and what Triton compiles it to for sm_100.

No Blackwell GPU has been available. The provider code runs unchanged in Triton's interpreter
with the capability check answering 10.0, through the sweep's own ``prepare()``, ``run()`` and
float64 check. The interpreter decodes every ``tl.dot_scaled`` scale as E8M0, so
``blackwell_standins.e4m3_dot_scaled`` makes it decode float8_e4m3fn scales as E4M3, as the
tensor cores do; without that stand-in the provider's own check of the kernel must notice and
fall back to the fp16 kernels. Each way of launching the kernel wrongly is made once, and must
be caught. The compile test needs no GPU either: Triton compiles for an sm_100 target on any
machine, and the PTX shows which MMA it chose.
"""

from __future__ import annotations

import re

import pytest
import torch
from blackwell_standins import e4m3_dot_scaled
from contract_helpers import capability, compiled_mma, contract_cases, measure

from nvfp4bench import numerics

pytest.importorskip("triton")

from nvfp4bench.kernels import triton_dot_scaled  # noqa: E402

# The provider tests run the kernels in Triton's interpreter, which is set up on the CPU only.
interpreter = pytest.mark.skipif(
    torch.cuda.is_available(), reason="patches Triton's interpreter (CPU only)"
)

# The larger shape also takes two BLOCK_K steps.
CASES = contract_cases("nvfp4-triton", (1, 96, 256), (130, 224, 512))


@pytest.fixture
def blackwell(monkeypatch):
    """Compute capability 10.0, E4M3 scales decoded as the tensor cores do, no remembered probe."""
    capability(monkeypatch, (10, 0))
    e4m3_dot_scaled(monkeypatch)
    monkeypatch.setattr(triton_dot_scaled, "_UNSUPPORTED", {})


@interpreter
@CASES
def test_provider_meets_the_contract(blackwell, name, had_size, shape):
    M, N, K = shape
    row = measure(name, M, N, K, had_size)
    assert row["status"] == "ok", row["reason"]
    assert row["check_rel_err"] <= 1e-2
    assert row["kernel"] == triton_dot_scaled.describe(K)


@interpreter
def test_a_triton_that_decodes_e4m3_scales_wrongly_gets_the_fp16_kernels(monkeypatch):
    """The interpreter as it is: the kernel's check fails, the row is still right, and says why."""
    capability(monkeypatch, (10, 0))
    monkeypatch.setattr(triton_dot_scaled, "_UNSUPPORTED", {})
    row = measure("nvfp4-triton-noquant", 5, 96, 256, None)
    assert row["status"] == "ok", row["reason"]
    assert row["kernel"].startswith("triton kernel=")
    note = r"\(not dot_scaled: tl.dot_scaled NVFP4 GEMM wrong on a test problem \(\d+ of 16384"
    assert re.search(note + r" wrong\)\)$", row["kernel"]), row["kernel"]


@interpreter
@pytest.mark.parametrize("gpu", [(9, 0), (12, 0)])
def test_other_gpus_keep_the_fp16_kernels(blackwell, monkeypatch, gpu):
    capability(monkeypatch, gpu)
    row = measure("nvfp4-triton-noquant", 5, 96, 256, None)
    assert row["status"] == "ok", row["reason"]
    assert row["kernel"].startswith("triton kernel=") and "dot_scaled" not in row["kernel"]


@interpreter
def test_a_k_the_swizzled_scales_cannot_hold_gets_the_fp16_kernels(blackwell):
    row = measure("nvfp4-triton", 5, 96, 288, 32)
    assert row["status"] == "ok", row["reason"]
    assert row["kernel"].endswith("(not dot_scaled: K=288 is not a multiple of 64)")


class _MutatedLaunch:
    """``kernel[grid](*args)`` with the arguments changed on the way."""

    def __init__(self, kernel, change):
        self.kernel, self.change = kernel, change

    def __getitem__(self, grid):
        launch = self.kernel[grid]
        return lambda *args, **kw: launch(*self.change(*args), **kw)


MUTATIONS = {
    "dtype: scales passed as uint8": lambda a, sa, b, sb, *rest: (
        a, sa.view(torch.uint8), b, sb.view(torch.uint8), *rest
    ),
    "layout: scales not swizzled": lambda a, sa, b, sb, *rest: (
        a, numerics.from_blocked(sa, *sa.shape), b, numerics.from_blocked(sb, *sb.shape), *rest
    ),
    "order: scale_a and scale_b swapped": lambda a, sa, b, sb, *rest: (a, sb, b, sa, *rest),
}  # fmt: skip


@interpreter
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_wrong_launch_fails_the_contract(blackwell, monkeypatch, mutation):
    """The right launch first (it also settles the kernel's own check), then one thing broken; the
    row must not be ok. M = 5 and N = 96 pad to the same 128 scale rows, so swapped scales are
    seen by the float64 check alone."""
    shape = (5, 96, 256)
    assert measure("nvfp4-triton-noquant", *shape, None)["status"] == "ok"
    kernel = triton_dot_scaled._dot_scaled_kernel
    mutated = _MutatedLaunch(kernel, MUTATIONS[mutation])
    monkeypatch.setattr(triton_dot_scaled, "_dot_scaled_kernel", mutated)
    row = measure("nvfp4-triton-noquant", *shape, None)
    assert row["status"] != "ok", f"{mutation} went unnoticed"


BLOCK_SCALED_MMA = re.compile(r"tcgen05\.mma\S*kind::mxf4nvf4\S*block_scale\S*(block16|4X)")


def test_compiles_to_the_block_scaled_tensor_core_mma_on_sm100():
    """E2M1 x E2M1 with E4M3 scales per 16 values (``mxf4nvf4``, scale block 16 / ``scale_vec::4X``)
    on the fifth-generation tensor cores (``tcgen05``): the native path, not a decomposition.
    Compiled in a process of its own (``compiled_mma``)."""
    mma = compiled_mma(100)
    assert any(BLOCK_SCALED_MMA.match(instruction) for instruction in mma), mma
