"""The Triton NVFP4 kernels against nvfp4bench.numerics (quantizer) and float64 (GEMM).

Without CUDA the kernels run in the Triton interpreter (TRITON_INTERPRET=1, set below before
anything imports triton's JIT for them), on tiny sizes. With CUDA they are compiled; tests marked
``gpu`` use larger shapes and the PTX decode path. Inputs are fresh random each run (seed printed
on failure; pin it with NVFP4_TEST_SEED).
"""

from __future__ import annotations

import os
import random

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

triton = pytest.importorskip("triton")

from nvfp4bench import numerics as nm  # noqa: E402
from nvfp4bench.kernels import triton_nvfp4 as tk  # noqa: E402

DEV = torch.device("cuda" if HAS_CUDA else "cpu")
SEED = int(os.environ.get("NVFP4_TEST_SEED", random.randrange(2**31)))
MAX_MISMATCH = 1e-3  # the brief's bound: >= 99.9 % of codes / scales / outputs equal

E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)
E2M1_MIDPOINTS = (E2M1[1:] + E2M1[:-1]) / 2


@pytest.fixture
def gen():
    print(f"NVFP4_TEST_SEED={SEED}")
    return torch.Generator().manual_seed(SEED)


def _sample(gen, rows, k, dist="normal"):
    if dist == "normal":
        x = torch.randn(rows, k, generator=gen)
    else:  # heavy tails: Student-t with 2 degrees of freedom
        z = torch.randn(rows, k, generator=gen)
        chi2 = torch.randn(rows, k, 2, generator=gen).pow(2).sum(-1)
        x = z / (chi2 / 2).sqrt()
    x = x * torch.exp(torch.randn(rows, 1, generator=gen))  # per-row magnitudes
    x[0, : min(k, 128)] = 0.0  # zero blocks (a whole rotation group)
    if rows > 1:
        x[1, : min(k, 128)] *= 1e-6  # blocks whose scale underflows / is subnormal
    return x.to(torch.bfloat16)


def _codes(packed):
    return torch.stack([packed & 0xF, packed >> 4], dim=-1).flatten(-2)


def _explain_code_mismatches(x, had_size, gs, codes, ref_codes, s_ref):
    """Each differing code must be one grid step away at a rounding tie of the reference's own
    y * inv: |y*inv - midpoint| within fp32 accumulation noise (relative 1e-5 of amax-scaled)."""
    diff = codes != ref_codes
    if not diff.any():
        return 0
    y = nm.rotate(x, had_size).double()
    S = s_ref.double().repeat_interleave(16, dim=-1)
    inv = torch.where(S == 0, torch.zeros_like(S), gs / S)
    v = (y * inv)[diff].abs()
    dist = (v[:, None] - E2M1_MIDPOINTS[None, :]).abs().min(dim=1).values
    steps = (codes[diff] & 7).long() - (ref_codes[diff] & 7).long()
    assert (steps.abs() <= 1).all(), "a code differs by more than one grid step"
    assert (dist <= 6 * 2e-5).all(), f"code differs away from a tie: distance {dist.max():.3g}"
    return int(diff.sum())


@pytest.mark.parametrize("dist", ["normal", "student_t"])
@pytest.mark.parametrize("had_size", [None, 16, 32, 64, 128])
def test_quantize_matches_reference(gen, had_size, dist):
    rows, k = (512, 4096) if HAS_CUDA else (8, 256)
    x = _sample(gen, rows, k, dist)
    gs = 1.0 if had_size in (None, 32) else float(torch.rand(1, generator=gen) * 4 + 0.25)
    packed, scales = tk.quantize_nvfp4(x.to(DEV), had_size, gs)
    packed, scales = packed.cpu(), scales.cpu()
    ref_packed, ref_scales = nm.quantize_nvfp4(x, had_size, gs, rounded_scale=True)
    assert packed.shape == ref_packed.shape and packed.dtype == torch.uint8
    assert scales.shape == ref_scales.shape and scales.dtype == torch.float8_e4m3fn
    s_bad = (scales.view(torch.uint8) != ref_scales.view(torch.uint8)).float().mean().item()
    codes, ref_codes = _codes(packed), _codes(ref_packed)
    c_bad = (codes != ref_codes).float().mean().item()
    assert s_bad < MAX_MISMATCH, f"scale mismatch rate {s_bad:.2e}"
    assert c_bad < MAX_MISMATCH, f"code mismatch rate {c_bad:.2e}"
    if s_bad == 0:  # codes are compared at equal scales; explain each difference
        _explain_code_mismatches(x, had_size, gs, codes, ref_codes, ref_scales)
    # zero block -> zero codes and zero scale
    assert (codes[0, :64] == 0).all() and (scales[0, :4].float() == 0).all()


@pytest.mark.parametrize("had_size", [16, 128])
def test_quantize_swizzled_and_linear_agree(gen, had_size):
    rows, k = (300, 1024) if HAS_CUDA else (5, 128)
    x = _sample(gen, rows, k)
    packed, (lin, sw) = tk.quantize_nvfp4(x.to(DEV), had_size, 1.0, swizzled=True)
    assert sw.shape == tk.swizzled_shape(rows, k)
    unswizzled = nm.from_blocked(sw.cpu(), rows, k // 16)
    assert torch.equal(unswizzled.view(torch.uint8), lin.cpu().view(torch.uint8))
    packed2, sw_only = tk.quantize_nvfp4(x.to(DEV), had_size, 1.0, linear=False, swizzled=True)
    assert torch.equal(packed2.cpu(), packed.cpu())
    assert torch.equal(nm.from_blocked(sw_only.cpu(), rows, k // 16).view(torch.uint8),
                       lin.cpu().view(torch.uint8))  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_quantize_candidates_agree(gen):
    """Every tuning candidate of the quantizer writes the same bytes."""
    x = _sample(gen, 300, 4096, "student_t").cuda()
    ref = tk.quantize_nvfp4(x, 64, 1.0)
    for be, nw, ps, ns in tk.QUANT_CANDIDATES:
        kw = dict(block_elems=be, num_warps=nw, programs_per_sm=ps, num_stages=ns)
        packed, scales = tk.quantize_nvfp4(x, 64, 1.0, **kw)
        assert torch.equal(packed, ref[0]), kw
        assert torch.equal(scales.view(torch.uint8), ref[1].view(torch.uint8)), kw


def test_quantize_rejects_bad_shapes():
    x = torch.zeros(2, 96, dtype=torch.bfloat16, device=DEV)
    with pytest.raises(ValueError, match="had_size"):
        tk.quantize_nvfp4(x, 64, 1.0)  # 96 % 64
    with pytest.raises(ValueError, match="had_size"):
        tk.quantize_nvfp4(x, 48, 1.0)
    with pytest.raises(ValueError, match="64"):
        tk.quantize_nvfp4(x, 16, 1.0, swizzled=True)  # 96 % 64
    with pytest.raises(ValueError, match="bf16"):
        tk.quantize_nvfp4(x.float(), 16, 1.0)


def _operands(gen, M, N, K, had_size=16, gs_a=1.0, gs_b=1.0, scale_a=1.0):
    a = (_sample(gen, M, K, "student_t").float() * scale_a).to(torch.bfloat16)
    b = _sample(gen, N, K)
    qa, sa = nm.quantize_nvfp4(a, had_size, gs_a)
    qb, sb = nm.quantize_nvfp4(b, had_size, gs_b)
    alpha = 1.0 / (gs_a * gs_b)
    ref = alpha * (nm.dequantize_nvfp4(qa, sa).double() @ nm.dequantize_nvfp4(qb, sb).double().T)
    return (qa, sa, qb, sb), alpha, ref


def _check_gemm(out, ref):
    """Equal to bf16(ref) except at accumulation-order ties, which are one bf16 ulp off."""
    out = out.float().cpu()
    exp = ref.to(torch.bfloat16).float()
    assert torch.isfinite(out).all(), "non-finite output (unwritten or overflow)"
    bad = out != exp
    rate = bad.float().mean().item()
    assert rate < MAX_MISMATCH, f"output mismatch rate {rate:.2e}"
    if bad.any():
        ulp = (exp[bad].abs() * 2.0**-7).clamp(min=2.0**-133)
        assert ((out[bad] - exp[bad]).abs() <= ulp * 1.01).all(), "a mismatch is over one ulp"
        # ... and only where the float64 value is near a bf16 rounding midpoint
        near = ((ref[bad].float() - exp[bad]).abs() - ulp / 2).abs() / ulp
        assert (near < 1e-3).all(), f"mismatch away from a tie ({near.max():.3g} ulp)"
    assert nm.relative_error(out, ref) < 1e-2


def _run_gemm(ops, alpha, config=None):
    qa, sa, qb, sb = (t.to(DEV) for t in ops)
    out = torch.full((qa.shape[0], qb.shape[0]), float("nan"), dtype=torch.bfloat16, device=DEV)
    return tk.nvfp4_gemm(qa, sa, qb, sb, alpha, out=out, config=config)


CPU_CONFIGS = [
    None,
    dict(kernel="gemv", block_n=16, block_k=128, split_k=2, mode=0),
    dict(kernel="gemv", block_n=16, block_k=64, split_k=1, mode=1),
    dict(kernel="gemv", block_n=32, block_k=128, split_k=1, mode=2),
    dict(kernel="mma", block_m=16, block_n=16, block_k=64, split_k=1, swap_ab=False),
    dict(kernel="mma", block_m=16, block_n=32, block_k=128, split_k=2, swap_ab=True),
    dict(kernel="mma", block_m=16, block_n=16, block_k=64, split_k=1, b_planes=True),
    dict(kernel="mma", block_m=16, block_n=32, block_k=64, b_planes=True, a_planes=True),
]


def _config_id(c):
    return "default" if c is None else "-".join(f"{v}" for v in c.values())


# the GEMV kernel serves M <= 4 only (and is slow in the interpreter): no M = 17 case for it
GEMM_CASES = [
    pytest.param(M, c, id=f"M{M}-{_config_id(c)}")
    for c in CPU_CONFIGS
    for M in (1, 3, 17)
    if not (c and c["kernel"] == "gemv" and M > 4)
]


@pytest.mark.parametrize(("M", "config"), GEMM_CASES)
def test_gemm_matches_float64(gen, M, config):
    N, K = (96, 512) if not HAS_CUDA else (320, 2048)
    ops, alpha, ref = _operands(gen, M, N, K, gs_a=2.0, gs_b=0.25)
    _check_gemm(_run_gemm(ops, alpha, config), ref)


def test_gemm_small_scales_exact(gen):
    """Tiny activations: decoded fp16 operands are subnormal; they must still be exact."""
    M, N, K = (4, 64, 256) if not HAS_CUDA else (64, 256, 1024)
    ops, alpha, ref = _operands(gen, M, N, K, scale_a=2.0**-12)
    assert (ops[1].float() < 2.0**-7).float().mean() > 0.5  # most scales make subnormal operands
    for config in (None, dict(kernel="gemv", block_n=16, block_k=128, split_k=1, mode=2)):
        _check_gemm(_run_gemm(ops, alpha, config), ref)


def test_gemm_checks_operands():
    qa = torch.zeros(2, 64, dtype=torch.uint8, device=DEV)
    sa = torch.zeros(2, 8, dtype=torch.float8_e4m3fn, device=DEV)
    qb = torch.zeros(3, 32, dtype=torch.uint8, device=DEV)
    sb = torch.zeros(3, 4, dtype=torch.float8_e4m3fn, device=DEV)
    with pytest.raises(ValueError, match="K mismatch"):
        tk.nvfp4_gemm(qa, sa, qb, sb)
    with pytest.raises(ValueError, match="too small"):
        tk.nvfp4_gemm(qa, sa[:, :4], qa, sa)


def test_quantize_then_gemm_end_to_end(gen):
    """Kernel quantizer feeding the kernel GEMM approximates the bf16 product (rotation cancels:
    H is orthogonal up to bf16 rounding)."""
    M, N, K = (3, 32, 256) if not HAS_CUDA else (33, 512, 2048)
    a = torch.randn(M, K, generator=gen).to(torch.bfloat16)
    b = torch.randn(N, K, generator=gen).to(torch.bfloat16)
    qa, sa = tk.quantize_nvfp4(a.to(DEV), 16, 1.0)
    qb, sb = tk.quantize_nvfp4(b.to(DEV), 16, 1.0)
    out = tk.nvfp4_gemm(qa, sa, qb, sb, 1.0).float().cpu()
    exact = a.double() @ b.double().T
    err = nm.relative_error(out, exact)
    assert 0.02 < err < 0.25, f"4-bit error {err:.3f} outside the plausible range"


# ------------------------------------------------------------------------------------------------
# GPU only: compiled kernels, PTX decode, tuned configurations, the providers
# ------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("M", [1, 4, 16, 64, 200, 2048])
def test_gemm_candidates_on_gpu(gen, M):
    N, K = 512, 2048
    from triton.runtime.errors import OutOfResources

    ops, alpha, ref = _operands(gen, M, N, K, gs_a=0.5, gs_b=3.0)
    ran = 0
    for config in tk.gemm_candidates(M, N, K):
        try:
            out = _run_gemm(ops, alpha, config)
        except OutOfResources:  # the tuner skips a candidate that does not fit; so may we
            continue
        _check_gemm(out, ref)
        ran += 1
    assert ran >= 1
    for config in tk.gemm_candidates(M, N, K)[:1]:  # the Triton-code decode path as well
        _check_gemm(_run_gemm(ops, alpha, dict(config, use_asm=False)), ref)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_decode_planes_exact(gen):
    ops, _, _ = _operands(gen, 4, 300, 1024)
    qb, sb = ops[2].cuda(), ops[3].cuda()
    dq = nm.dequantize_nvfp4(ops[2], ops[3]) * 2.0**-7
    for use_asm in (True, False):
        planes = tk.decode_planes(qb, sb, use_asm=use_asm).float().cpu()
        assert torch.equal(planes[0], dq[:, 0::2]) and torch.equal(planes[1], dq[:, 1::2])


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", ["nvfp4-triton", "nvfp4-triton-noquant"])
@pytest.mark.parametrize("M", [1, 128])
def test_providers_on_gpu(gen, name, M):
    from nvfp4bench.providers import get_provider

    provider = get_provider(name)
    assert provider.unavailable_reason(DEV) is None
    a = torch.randn(M, 1024, generator=gen).to(torch.bfloat16).cuda()
    b = torch.randn(768, 1024, generator=gen).to(torch.bfloat16).cuda()
    prepared = provider.prepare(a, b, 64)
    out = prepared.run()
    assert out.shape == (M, 768) and out.dtype == torch.bfloat16
    rows, cols = torch.arange(M).cuda(), torch.arange(0, 768, 7).cuda()
    ref = prepared.reference(rows, cols)
    assert nm.relative_error(out[rows][:, cols], ref) < prepared.tolerance
    # the provider's own quantization is the kernel's: the result is the exact product
    _check_gemm(out[rows][:, cols], ref.cpu())
