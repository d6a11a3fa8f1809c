"""The Triton MXFP4 kernels and providers (``mxfp4-triton``, ``mxfp4-triton-noquant``): the fused
quantizer's MXFP4 mode and the ``tl.dot_scaled`` GEMM against the reference numerics.

Without a GPU they run in Triton's interpreter, which decodes ``tl.dot_scaled``'s uint8 scales
as E8M0, as the GPU does, so no stand-in is needed. What Triton compiles the GEMM to is checked
for each architecture without a GPU too. The ``gpu`` tests run the same checks on larger
problems and every tuning candidate on a GPU.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from contract_helpers import compiled_mma, compiled_quantizer, measure
from test_sweep import settings as sweep_settings

from nvfp4bench import numerics, sweep
from nvfp4bench.providers import get_provider

pytest.importorskip("triton")

from nvfp4bench.kernels import triton_dot_scaled  # noqa: E402
from nvfp4bench.kernels.triton_nvfp4 import quantize_nvfp4  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _operands(M, N, K, seed, heavy=False):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(M, K, generator=g, dtype=torch.float64)
    if heavy:  # Student-t with 2 degrees of freedom
        a = a / torch.sqrt(-torch.log(torch.rand(M, K, generator=g, dtype=torch.float64)))
    b = torch.randn(N, K, generator=g, dtype=torch.float64)
    return a.to(torch.bfloat16).to(DEVICE), b.to(torch.bfloat16).to(DEVICE)


def _check_quantizer(x, had_size):
    packed, (linear, swizzled) = quantize_nvfp4(x, had_size, fmt="mxfp4", swizzled=True)
    ref_packed, ref_scales = numerics.quantize_mxfp4(x.cpu(), had_size)
    assert torch.equal(linear.cpu(), ref_scales)
    assert torch.equal(packed.cpu(), ref_packed)
    rows, cols = ref_scales.shape
    assert torch.equal(numerics.from_blocked(swizzled.cpu(), rows, cols), ref_scales)


def _check_gemm(M, N, K, had_size, config=None, seed=0):
    a, b = _operands(M, N, K, seed, heavy=True)
    ap, a_s = quantize_nvfp4(a, had_size, fmt="mxfp4")
    bp, b_s = quantize_nvfp4(b, had_size, fmt="mxfp4")
    out = triton_dot_scaled.mxfp4_gemm(
        ap, a_s, bp, b_s, torch.ones(1, device=DEVICE), config=config
    )
    ref = numerics.dequantize_mxfp4(ap.cpu(), a_s.cpu()).double()
    ref = ref @ numerics.dequantize_mxfp4(bp.cpu(), b_s.cpu()).double().T
    # The bf16 rounding of the float64 product, up to ties that fp32 summation order can flip.
    wrong = (out.cpu() != ref.to(torch.bfloat16)).float().mean().item()
    assert wrong <= 2e-3 and numerics.relative_error(out.cpu(), ref) < 1e-2, (config, wrong)


@pytest.mark.parametrize("had_size", [None, 32, 64, 128])
def test_quantizer_is_the_reference(had_size):
    x, _ = _operands(130, 1, 512, had_size or 1, heavy=True)
    _check_quantizer(x * 1e-20, had_size)  # E8M0 scales far from E4M3's range
    _check_quantizer(x, had_size)


@pytest.mark.parametrize("M, N, K", [(1, 64, 256), (37, 192, 512)])
def test_gemm_is_the_reference(M, N, K):
    _check_gemm(M, N, K, 32)


@pytest.mark.parametrize(
    "name, had_size, shape",
    [("mxfp4-triton", had, (1, 96, 256)) for had in (None, *numerics.MX_HAD_SIZES)]
    + [("mxfp4-triton-noquant", None, (1, 96, 256)), ("mxfp4-triton", 32, (130, 224, 512)),
       ("mxfp4-triton-noquant", None, (130, 224, 512))],
)  # fmt: skip
def test_provider_meets_the_contract(name, had_size, shape):
    row = measure(name, *shape, had_size)
    assert row["status"] == "ok", row["reason"]
    assert row["check_rel_err"] <= 1e-2
    assert row["kernel"].startswith("triton dot_scaled bm")


def test_had_16_and_a_k_the_gemm_cannot_tile_are_skipped():
    row = measure("mxfp4-triton", 1, 96, 256, 16)
    assert row["status"] == "skipped"
    assert row["reason"].startswith("had_size=16 is not an MXFP4 rotation")
    row = measure("mxfp4-triton-noquant", 1, 96, 96, None)
    assert (row["status"], row["reason"]) == ("skipped", "K=96 is not a multiple of 64 (the "
                                              "tl.dot_scaled GEMM)")  # fmt: skip


@pytest.mark.parametrize(
    "capability, instruction",
    [(80, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"),
     (90, "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"),
     (100, "tcgen05.mma.cta_group::1.kind::mxf4.block_scale.block32")],
)  # fmt: skip
def test_what_triton_compiles_it_to(capability, instruction):
    """bf16 tensor cores after decoding below 10.0 (the H100: sm_90), the block-scaled FP4 MMA on
    10.x. The instructions depend on the Triton version; these are Triton 3.9's."""
    assert instruction in compiled_mma(capability, "mxfp4")


@pytest.mark.parametrize("fmt, had_size", [("nvfp4", 16), ("nvfp4", 128), ("mxfp4", 32)])
def test_the_quantizer_compiles_for_hopper(fmt, had_size):
    """Both formats' quantizer is one kernel; the interpreter does not compile it, so compile it
    for sm_90 here (a GPU run is the only other place a compile error would show)."""
    assert compiled_quantizer(90, fmt, had_size) > 1000


# ------------------------------------------------------------------------------------------------
# on a GPU
# ------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("had_size", [None, 32, 64, 128])
def test_gpu_quantizer_is_the_reference_bit_for_bit(had_size):
    x, _ = _operands(4096, 1, 8192, 7, heavy=True)
    _check_quantizer(x, had_size)


@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 16, 100, 300])
def test_gpu_every_candidate_is_the_reference(M):
    for config in triton_dot_scaled.MX_CANDIDATES:
        if config["block_m"] <= max(16, 1 << (M - 1).bit_length()):
            _check_gemm(M, 512, 1024, 64, config, seed=M)


@pytest.mark.gpu
@pytest.mark.parametrize("name, had_size", [("mxfp4-triton", 128), ("mxfp4-triton-noquant", None)])
def test_gpu_providers_meet_the_contract(name, had_size):
    """Through the sweep's prepare, run and float64 check, with the tuner, on the GPU."""
    settings = dataclasses.replace(
        sweep_settings(), N=1024, K=4096, batch_sizes=(33,), device="cuda", providers=(name,),
        had_sizes=(had_size,) if had_size else (),
    )  # fmt: skip
    weight = torch.randn(1024, 4096, device="cuda").to(torch.bfloat16)
    key = sweep.RowKey(name, had_size, 33)
    row, _ = sweep._measure(settings, get_provider(name), key, weight, torch.device("cuda"))
    assert row["status"] == "ok", row["reason"]
