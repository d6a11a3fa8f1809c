"""The CUDA C++ NVFP4 kernels (NVRTC): weight layout and decode on the CPU, every variant compiled
for sm_90 with NVRTC (no GPU needed), and on a GPU bit-faithfulness to the float64 reference."""

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from nvfp4bench import numerics
from nvfp4bench.kernels import cuda_nvfp4 as cn

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")


def fresh_generator() -> torch.Generator:
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))


def student_t(shape, generator) -> torch.Tensor:
    """Heavy-tailed (3 degrees of freedom): blocks with 10-100 sigma outliers."""
    z = torch.randn(shape, generator=generator)
    chi2 = sum(torch.randn(shape, generator=generator) ** 2 for _ in range(3))
    return z / torch.sqrt(chi2 / 3)


def random_nvfp4(rows: int, K: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Every nibble value and scale byte (E4M3 0..126, subnormals included) at random."""
    packed = torch.randint(0, 256, (rows, K // 2), generator=generator, dtype=torch.uint8)
    scales = torch.randint(0, 127, (rows, K // 16), generator=generator, dtype=torch.uint8)
    return packed, scales.view(torch.float8_e4m3fn)


# ------------------------------------------------------------------------------------------------
# layout (CPU)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("N, K", [(16, 64), (48, 256), (128, 576), (4112, 4096)])
def test_permute_weight_round_trips(N, K):
    """(4112, 4096): more row tiles than one slice of the conversion, and a partial last one."""
    packed, scales = random_nvfp4(N, K, fresh_generator())
    prepared = cn.permute_weight(packed, scales)
    assert prepared.shape == (N // 16, K // 64, cn.CHUNK_BYTES) and prepared.dtype == torch.uint8
    assert prepared.numel() == packed.numel() + scales.numel()  # still 0.5625 bytes per value
    back_packed, back_scales = cn.unpermute_weight(prepared)
    assert torch.equal(back_packed, packed)
    assert torch.equal(back_scales.view(torch.uint8), scales.view(torch.uint8))


@pytest.mark.parametrize("N, K", [(24, 64), (16, 96)])
def test_permute_weight_refuses_shapes_the_kernel_cannot_tile(N, K):
    packed, scales = random_nvfp4(N, K, fresh_generator())
    with pytest.raises(ValueError, match=f"N={N}, K={K}"):
        cn.permute_weight(packed, scales)


def _shift_left(word: np.ndarray, x: int) -> np.ndarray:
    return word << np.uint32(x) if x >= 0 else word >> np.uint32(-x)


def _e2m1_pair(word: np.ndarray, p: int) -> np.ndarray:
    """nvfp4_cuda.cu's e2m1_pair<P>: register p of a prepared word -> fp16x2 bits."""
    mag_shift, sign_shift = cn.PAIR_SHIFTS[p]
    mag = _shift_left(word, mag_shift) & np.uint32(0x0E000E00)
    return mag | (_shift_left(word, sign_shift) & np.uint32(0x80008000))


def test_the_kernel_source_uses_the_python_pair_shifts():
    source = (Path(cn.__file__).parent / "nvfp4_cuda.cu").read_text()
    mags = ", ".join(str(m) for m, _ in cn.PAIR_SHIFTS)
    signs = ", ".join(str(s) for _, s in cn.PAIR_SHIFTS)
    assert f"MAG_SHIFT[4] = {{{mags}}};" in source
    assert f"SIGN_SHIFT[4] = {{{signs}}};" in source


def test_lane_fragments_decode_to_the_reference_weight():
    """What a lane reads from a prepared chunk, decoded as the kernel does (shifts and masks to
    fp16 q * 2**-14, times the E4M3 scale as fp16), is the mma.sync A fragment of the dequantized
    weight: register p of lane (g, t) holds rows g + 8 (p % 2), k = 2t, 2t + 1 (+ 8 for p >= 2)."""
    N, K = 32, 128
    packed, scales = random_nvfp4(N, K, fresh_generator())
    ref = numerics.dequantize_nvfp4(packed, scales).double() * 2.0**-14
    prepared = cn.permute_weight(packed, scales).numpy()
    for tile in range(N // 16):
        for chunk in range(K // 64):
            data = prepared[tile, chunk]
            words = data[:512].view(np.uint32).reshape(32, 4)  # [lane, kt]
            scale_bytes = data[512:].reshape(8, 4, 2)  # [g, kt, row // 8]
            for lane in range(32):
                g, t = divmod(lane, 4)
                for kt in range(4):
                    pair = scale_bytes[g, kt].copy().view(np.uint8)
                    s = torch.from_numpy(pair).view(torch.float8_e4m3fn).double().numpy()
                    for p in range(4):
                        halves = _e2m1_pair(words[lane, kt : kt + 1], p).view(np.float16)
                        value = halves.astype(np.float64) * s[p % 2]
                        row = tile * 16 + g + 8 * (p % 2)
                        k = chunk * 64 + kt * 16 + 2 * t + 8 * (p // 2)
                        assert value.tolist() == ref[row, k : k + 2].tolist()


def test_e2m1_times_e4m3_is_exact_in_fp16():
    """Every code times every scale, as the kernel forms it (q * 2**-14 in fp16 times s in fp16,
    one rounding), equals q * s * 2**-14: the products need no more than fp16's subnormal grid."""
    q = torch.arange(16, dtype=torch.uint8)
    grid = numerics.dequantize_nvfp4(
        (q | (q << 4)).view(16, 1).repeat(1, 8), torch.ones(16, 1, dtype=torch.float8_e4m3fn)
    )[:, 0].double()
    s = torch.arange(127, dtype=torch.uint8).view(torch.float8_e4m3fn).to(torch.float16).numpy()
    for code in range(16):
        # A 16 x 64 weight of this code only: register 0 of lane 0 holds it twice.
        packed = torch.full((16, 32), code | (code << 4), dtype=torch.uint8)
        word = cn.permute_weight(packed, torch.ones(16, 4, dtype=torch.float8_e4m3fn))[0, 0, :4]
        halves = _e2m1_pair(word.numpy().view(np.uint32), 0).view(np.float16)
        assert halves[0] == halves[1] == float(grid[code]) * 2.0**-14
        product = (halves[0] * s).astype(np.float64)
        assert np.array_equal(product, float(grid[code]) * s.astype(np.float64) * 2.0**-14)


def test_gemm_candidates_fit_and_balance():
    def occupancy(variant, smem):
        return 0 if smem > 227 * 1024 else min(64 // variant.warps, 228 * 1024 // (smem + 1024))

    shapes = [(1, 10240, 8192), (16, 8192, 28672), (64, 57344, 8192), (100, 8192, 8192)]
    for M, N, K in shapes + [(1, 256, 1024), (33, 16, 64)]:  # the last two cannot fill the GPU
        candidates = cn.gemm_candidates(M, N, K, occupancy, 132)
        # The wgmma variants go in pairs of 64-k chunks (two A register sets), except 16 warps.
        assert {c.variant.wgmma for c in candidates} == {False, True}, (M, N, K)
        if K % 128:
            assert all(c.variant.warps == 16 for c in candidates if c.variant.wgmma)
        without = cn.gemm_candidates(M, N, K, occupancy, 132, wgmma=False)
        assert without == [c for c in candidates if not c.variant.wgmma]
        for config in candidates:
            v = config.variant
            assert v.mt == cn.token_tiles(M, v.wgmma) and (N // 16) % v.nt == 0
            assert 8 * v.mt >= min(M, 8 * cn.token_tiles(10**6, v.wgmma))  # one CTA row if it can
            assert 1 <= config.k_splits <= K // 64
            assert cn.smem_bytes(v, cn.max_slice(K, config.k_splits, v)) <= 227 * 1024
            n_blocks, _ = cn._blocks(M, N, v)
            share = -(-n_blocks // config.ctas_x)
            assert 1 <= config.ctas_x <= n_blocks and n_blocks <= config.ctas_x * share
            # K splits are whole units (pairs of chunks for the two-register-set kernels)
            assert K % cn.split_unit(v) == 0 and config.k_splits <= K // cn.split_unit(v)
        # The streamed kernel from MT = 4 (M > 16) on, where its chunk pairs fit K.
        assert any(c.variant.streamed for c in candidates) == (M > 16 and K % 128 == 0), (M, N, K)


def test_max_slice_bounds_every_split_the_kernel_forms():
    """The kernel's K-slice of split y is chunks [c0, c1) with c = (y * units / splits) * A_SETS
    (nvfp4_gemm_small_m); the shared memory sized by ``max_slice`` must hold the longest."""
    for v in {cn.GemmVariant(1, 1, 8, 4), cn.GemmVariant(1, 1, 8, 4, True)}:
        unit = cn.split_unit(v) // 64
        for K in (128, 640, 8192, 28672):
            units = K // 64 // unit
            for splits in range(1, units + 1):
                longest = max(
                    ((y + 1) * units // splits - y * units // splits) * unit * 64
                    for y in range(splits)
                )
                assert longest <= cn.max_slice(K, splits, v), (v, K, splits)


def test_streamed_candidates_need_whole_chunk_pairs():
    def occupancy(variant, smem):
        return 0 if smem > 227 * 1024 else 1

    odd = cn.gemm_candidates(64, 1024, 3 * 64, occupancy, 132)  # three 64-k chunks
    assert {(c.variant.streamed, c.variant.nt) for c in odd if c.variant.streamed} == {(True, 2)}
    assert all(cn.split_unit(c.variant) == 64 for c in odd)
    streamed_one_tile = next(v for v in cn.GEMM_VARIANTS if v.streamed and v.nt == 1)
    with pytest.raises(ValueError, match="does not fit"):
        cn.CudaGemm(64, 1024, 3 * 64, cn.GemmConfig(streamed_one_tile, 1, 1), torch.device("cpu"))


# ------------------------------------------------------------------------------------------------
# NVRTC (CPU): every variant compiles for sm_90, without spills; the cache is used
# ------------------------------------------------------------------------------------------------


def _cuobjdump() -> str | None:
    try:
        import triton

        path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        return str(path) if path.exists() else shutil.which("cuobjdump")
    except ImportError:
        return shutil.which("cuobjdump")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Every variant compiled for sm_90 into a cache folder of its own: (folder, cubins)."""
    pytest.importorskip("cuda.core", reason="cuda-python (the [cuda] extra) is not installed")
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NVFP4BENCH_CACHE", str(folder))
        variants = cn.GEMM_VARIANTS + cn.QUANT_VARIANTS
        # NVRTC releases the GIL: threads compile side by side (each variant its own cache file)
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            built = pool.map(partial(cn.compile_variant, arch="sm_90"), variants)
            cubins = dict(zip(variants, built, strict=True))
    return folder, cubins


def test_every_variant_compiles_for_sm_90_without_spills(compiled):
    tool = _cuobjdump()
    for variant, cubin in compiled[1].items():
        assert cubin[:4] == b"\x7fELF", variant
        if tool is None:
            continue
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin)
            f.flush()
            usage = subprocess.run(
                [tool, "--dump-resource-usage", f.name], capture_output=True, text=True, check=True
            ).stdout
        assert variant.kernel_name in usage
        assert "LOCAL:0" in usage, f"{variant} spills to local memory:\n{usage}"
        if getattr(variant, "streamed", False) and variant.nt == 1:
            # Both A register sets and the accumulators fit in its 128 registers: no stack at all.
            gemm = usage[usage.index(f"Function {variant.kernel_name}") :]
            assert "STACK:0 " in gemm.splitlines()[1], f"{variant} spills:\n{usage}"


def test_wgmma_variants_are_for_sm_90_only():
    variant = next(v for v in cn.GEMM_VARIANTS if v.wgmma)
    with pytest.raises(ValueError, match="sm_100"):
        cn.compile_variant(variant, "sm_100")


def test_compiled_cubins_are_cached_on_disk(compiled, monkeypatch):
    folder, cubins = compiled
    monkeypatch.setenv("NVFP4BENCH_CACHE", str(folder))
    variant = cn.QUANT_VARIANTS[1]
    files = list(cn.cache_dir().glob(f"{variant.kernel_name}-sm_90-*.cubin"))
    assert len(files) == len(cn.QUANT_VARIANTS)
    # A cached file is what the next call returns: overwrite one and read it back.
    path = next(f for f in files if f.read_bytes() == cubins[variant])
    try:
        path.write_bytes(b"\x7fELF cached")
        assert cn.compile_variant(variant, "sm_90") == b"\x7fELF cached"
    finally:
        path.write_bytes(cubins[variant])


# ------------------------------------------------------------------------------------------------
# GPU
# ------------------------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("had_size", [None, 16, 32, 64, 128])
@pytest.mark.parametrize("dist", ["gaussian", "student-t"])
def test_quantizer_equals_the_reference(had_size, dist):
    gen = fresh_generator()
    x = torch.randn(256, 4096, generator=gen) if dist == "gaussian" else student_t((256, 4096), gen)
    x[0, :64] = 0.0  # an all-zero block
    x[1, :64] = 1e-30  # a block whose scale underflows to zero
    x = x.to(torch.bfloat16)
    gs = torch.ones(1, device="cuda")
    codes, scales = cn.quantize_nvfp4(x.cuda(), had_size, gs)
    ref_codes, ref_scales = numerics.quantize_nvfp4(x, had_size)
    assert torch.equal(scales.cpu().view(torch.uint8), ref_scales.view(torch.uint8))
    ours = numerics.dequantize_nvfp4(codes.cpu(), scales.cpu())
    ref = numerics.dequantize_nvfp4(ref_codes, ref_scales)
    # fp32 summation order of the rotation can move a value across a rounding tie: one grid step
    # at most, and rarely.
    differ = ours != ref
    assert differ.float().mean() < 1e-3
    s = scales.cpu().float().repeat_interleave(16, dim=1)
    assert ((ours - ref).abs()[differ] <= 2 * s[differ]).all()


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 5, 16, 33, 64, 100, 128, 200])
def test_every_gemm_candidate_is_bit_faithful(M):
    gen = fresh_generator()
    N, K = 512, 2048
    gs = torch.ones(1, device="cuda")
    w = student_t((N, K), gen).to(torch.bfloat16).cuda()
    a = student_t((M, K), gen).to(torch.bfloat16).cuda()
    b_packed, b_scales = cn.quantize_nvfp4(w, 16, gs)
    a_packed, a_scales = cn.quantize_nvfp4(a, 16, gs)
    weight = cn.permute_weight(b_packed, b_scales)
    a_dq = numerics.dequantize_nvfp4(a_packed, a_scales).double()
    b_dq = numerics.dequantize_nvfp4(b_packed, b_scales).double()
    ref = (a_dq @ b_dq.T).to(torch.bfloat16)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    occupancy = partial(cn.occupancy, device=torch.device("cuda"))
    for config in cn.gemm_candidates(M, N, K, occupancy, sms, cn.wgmma_arch(cn.device_arch(0))):
        out = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
        for _ in range(2):  # the second launch checks the split counters were reset
            cn.CudaGemm(M, N, K, config, torch.device("cuda"))(a_packed, a_scales, weight, gs, out)
        differ = (out != ref).sum().item()
        # Exact but for fp32 accumulation-order ties at the bf16 rounding.
        assert differ <= max(1, out.numel() // 1000), (config, differ)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["nvfp4-cuda", "nvfp4-cuda-noquant"])
def test_providers_on_gpu(name):
    from nvfp4bench.providers import get_provider

    provider = get_provider(name)
    assert provider.unavailable_reason(torch.device("cuda")) is None
    gen = fresh_generator()
    for M in (1, 48, 200):
        a = student_t((M, 1024), gen).to(torch.bfloat16).cuda()
        b = torch.randn(256, 1024, generator=gen).to(torch.bfloat16).cuda()
        prepared = provider.prepare(a, b, 32 if provider.uses_had_size else None)
        out = prepared.run()
        rows, cols = torch.arange(M, device="cuda"), torch.arange(256, device="cuda")
        err = numerics.relative_error(out, prepared.reference(rows, cols))
        assert err <= prepared.tolerance and prepared.kernel
