"""NVFP4 + Hadamard in CUDA C++ compiled at run time (NVRTC) for GPUs without FP4 tensor cores.

The kernels are ``nvfp4_cuda.cu`` beside this file; what they compute is ``docs/nvfp4-spec.md``:

* ``quantize_nvfp4(x, had_size, gs)``: one thread per two 16-value scale blocks. The Hadamard
  rotation is a fast Walsh-Hadamard transform (the first 32 points in registers, the rest by warp
  shuffles), times the bf16-rounded ``had_size**-0.5``; one amax, one E4M3 scale (``cvt.satfinite``,
  RNE) and one table-looked-up IEEE reciprocal per block; E2M1 by integer rounding. Outputs the same
  packed codes and linear scales as ``numerics.quantize_nvfp4``.
* ``CudaGemm``: bf16 ``alpha * A_dq @ W_dq^T`` for small M (Marlin-style): the weight is
  re-laid once (``permute_weight``) so that one 16-byte load per lane yields ready ``mma.sync``
  A-fragments for 16 rows x 64 k; it streams through a per-warp ``cp.async`` ring with an L2
  evict-first policy and is decoded in registers (E2M1 -> fp16 by shifts and masks, times the E4M3
  scale folded into one fp16x2 multiply) into the A operand of ``mma.sync`` or, on sm_90, of
  ``wgmma`` (the tuner picks). The activation's K-slice is decoded to fp16 into shared memory once
  per CTA. The grid covers every SM by splitting K; the partials are added in split
  order by the last CTA of each tile (deterministic).

Compilation uses ``cuda.core`` (NVIDIA's cuda-python: ``Program`` -> cubin for the device's
architecture), which needs no GPU, so CI compiles every variant; the cubins are cached on disk
(``cache_dir()``). Modules are loaded and launched through the CUDA driver API of
``cuda.bindings`` on PyTorch's current stream, which CUDA graphs capture like any launch.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from pathlib import Path

import torch

from ..io import write_bytes
from ..numerics import HAD_SIZES
from .tuning import cache_root, device_key, fastest, remembered, source_hash

CHUNK_BYTES = 576  # one prepared-weight chunk: 16 rows x 64 k (512 bytes of codes, 64 of scales)


# ------------------------------------------------------------------------------------------------
# compilation
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GemmVariant:
    """Compile-time shape of the GEMM kernel: MT token tiles of 8, NT 16-row weight tiles per warp,
    WARPS warps, STAGES cp.async stages per warp; `wgmma`: Hopper's warpgroup MMA (sm_90a, one
    m64n(8 MT)k16 per four warps, the activation read from shared memory by the tensor cores)
    instead of per-warp mma.sync; `streamed` (wgmma only): the activation is decoded to fp16 once
    per call by a second kernel and streamed through a shared-memory ring with the weight, instead
    of each CTA holding its whole K-slice (so large M needs no K splits to fit)."""

    mt: int
    nt: int
    warps: int
    stages: int
    wgmma: bool = False
    streamed: bool = False

    @property
    def a_register_sets(self) -> int:
        """Sets of wgmma A registers, used in turn: the next chunk is decoded into one while the
        last chunk's wgmmas read the other. They fit (no spills, ptxas) in the resident kernel
        with up to 8 warps (255 registers per thread), and in the streamed kernel (128) with one
        row tile per warp. K splits are then whole pairs of 64-k chunks."""
        if self.streamed:
            return 2 if self.nt == 1 else 1
        return 2 if self.wgmma and self.warps <= 8 else 1

    @property
    def defines(self) -> dict[str, int]:
        defines = {"MT": self.mt, "NT": self.nt, "WARPS": self.warps, "STAGES": self.stages,
                   "A_SETS": self.a_register_sets}  # fmt: skip
        if self.wgmma:
            defines["WGMMA"] = 1
        if self.streamed:
            defines["STREAM_B"] = 1
        return defines

    kernel_name = "nvfp4_gemm_small_m"


@dataclass(frozen=True)
class QuantVariant:
    had_size: int  # 0: no rotation

    @property
    def defines(self) -> dict[str, int]:
        return {"R": self.had_size}

    kernel_name = "nvfp4_quantize"


# (NT, WARPS, STAGES) per MT, for mma.sync and for wgmma. On the H100 and H200 shallow rings with
# more resident warps beat deep ones (benchmarks/NOTES.md): the decode is issue-bound before the
# bytes in flight run short.
_MMA_SYNC_SHAPES = {
    1: ((1, 8, 4), (1, 8, 8), (2, 8, 3), (2, 8, 4), (2, 8, 8), (2, 4, 12), (4, 4, 8), (4, 8, 3)),
    2: ((1, 8, 4), (1, 8, 8), (2, 8, 3), (2, 8, 4), (2, 8, 8), (2, 4, 12), (4, 4, 8), (4, 8, 3)),
    4: ((1, 8, 8), (2, 8, 4), (2, 8, 8), (2, 4, 12), (4, 4, 4), (4, 8, 3), (4, 8, 4)),
    8: ((1, 8, 8), (1, 8, 16), (2, 8, 4), (2, 8, 8), (2, 4, 6), (4, 4, 4), (4, 8, 3), (4, 8, 4)),
}
_WGMMA_SHAPES = {
    1: ((1, 8, 4), (2, 8, 3), (2, 4, 8)),
    2: ((1, 8, 4), (2, 8, 3), (2, 8, 4), (2, 4, 8)),
    4: ((1, 8, 4), (2, 8, 3), (2, 8, 4), (2, 8, 8), (2, 4, 8), (4, 4, 4), (1, 16, 4)),
    8: (
        (1, 8, 4),
        (1, 8, 8),
        (1, 8, 16),
        (2, 8, 3),
        (2, 8, 8),
        (1, 4, 8),
        (2, 4, 4),
        (1, 16, 4),
        (1, 16, 8),
    ),
    16: ((1, 8, 3), (1, 8, 8), (1, 4, 4), (2, 4, 3), (1, 16, 4)),
}
# The streamed wgmma kernel: (NT, WARPS, STAGES) per MT (MT * 2 a multiple of WARPS). At MT = 2
# it lost to the resident kernels on every Llama-3.3-70B layer (benchmarks/NOTES.md, v6).
_STREAMED_SHAPES = {
    4: ((1, 4, 4), (1, 8, 4), (1, 8, 6), (2, 8, 4)),
    8: ((1, 4, 4), (1, 8, 4), (2, 8, 3), (2, 8, 4), (1, 16, 3), (1, 16, 4)),
    16: ((1, 4, 4), (1, 8, 4), (1, 8, 6), (1, 16, 3), (1, 16, 4), (1, 16, 6)),
}
GEMM_VARIANTS = tuple(
    GemmVariant(mt, nt, warps, stages, wgmma, streamed)
    for wgmma, streamed, table in (
        (False, False, _MMA_SYNC_SHAPES),
        (True, False, _WGMMA_SHAPES),
        (True, True, _STREAMED_SHAPES),
    )
    for mt, shapes in table.items()
    for nt, warps, stages in shapes
)
QUANT_VARIANTS = tuple(QuantVariant(r) for r in (0, *HAD_SIZES))


def _source() -> str:
    return resources.files(__package__).joinpath("nvfp4_cuda.cu").read_text()


def cache_dir() -> Path:
    """Where compiled cubins are kept: $NVFP4BENCH_CACHE/cubin, else ~/.cache/nvfp4bench/cubin."""
    return cache_root() / "cubin"


def _program_classes():
    try:
        from cuda.core import Program, ProgramOptions
    except ImportError:  # cuda.core < 0.4 kept these under .experimental
        from cuda.core.experimental import Program, ProgramOptions
    return Program, ProgramOptions


def _nvrtc_version() -> str:
    from cuda.bindings import nvrtc

    err, major, minor = nvrtc.nvrtcVersion()
    return f"{major}.{minor}"


def wgmma_arch(arch: str) -> bool:
    """wgmma exists on sm_90 only (as sm_90a); Blackwell has its own MMA instructions."""
    return arch == "sm_90"


def compile_variant(variant: GemmVariant | QuantVariant, arch: str = "sm_90") -> bytes:
    """The cubin of one kernel variant for `arch`, from the disk cache or NVRTC (no GPU needed).

    The cache key covers the source, the defines, the architecture and the NVRTC version."""
    if getattr(variant, "wgmma", False):
        if not wgmma_arch(arch):
            raise ValueError(f"{variant} needs sm_90 (wgmma), not {arch}")
        arch = "sm_90a"  # the architecture-specific target that has wgmma
    source = _source()
    defines = "".join(f"#define {k} {v}\n" for k, v in variant.defines.items())
    code = defines + source
    key = hashlib.sha256(f"{arch}\n{_nvrtc_version()}\n{code}".encode()).hexdigest()[:24]
    path = cache_dir() / f"{variant.kernel_name}-{arch}-{key}.cubin"
    if path.exists():
        return path.read_bytes()
    Program, ProgramOptions = _program_classes()
    options = ProgramOptions(arch=arch, std="c++17", name=f"{variant.kernel_name}.cu")
    cubin = Program(code, "c++", options).compile("cubin").code
    write_bytes(cubin, path)  # atomic: concurrent jobs never read half a cubin
    return cubin


def device_arch(device: torch.device) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


# ------------------------------------------------------------------------------------------------
# loading and launching (CUDA driver API)
# ------------------------------------------------------------------------------------------------


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        from cuda.bindings import driver

        _, name = driver.cuGetErrorName(err)
        raise RuntimeError(f"CUDA driver error {name.decode() if name else int(err)}")
    return rest[0] if len(rest) == 1 else rest


@cache
def _module(variant: GemmVariant | QuantVariant, device_index: int):
    """The variant's module, loaded into PyTorch's context of this device."""
    from cuda.bindings import driver

    device = torch.device("cuda", device_index)
    torch.cuda.init()
    with torch.cuda.device(device):
        torch.empty(1, device=device)  # make the primary context current on this thread
        return _check(driver.cuModuleLoadData(compile_variant(variant, device_arch(device))))


@cache
def _function(variant: GemmVariant | QuantVariant, device_index: int, name: str = ""):
    """(CUfunction, module) of the variant's kernel (or kernel `name` of its module), with the
    largest dynamic shared memory allowed."""
    from cuda.bindings import driver

    device = torch.device("cuda", device_index)
    module = _module(variant, device_index)
    with torch.cuda.device(device):
        function = _check(
            driver.cuModuleGetFunction(module, (name or variant.kernel_name).encode())
        )
        attrs = driver.CUfunction_attribute
        static = _check(
            driver.cuFuncGetAttribute(attrs.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, function)
        )
        limit = torch.cuda.get_device_properties(device).shared_memory_per_block_optin - static
        _check(
            driver.cuFuncSetAttribute(
                function, attrs.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, limit
            )
        )
    return function, module


_PTR, _INT, _FLOAT = ctypes.c_void_p, ctypes.c_int, ctypes.c_float


def _launch(function, grid, block, smem, args, types):
    from cuda.bindings import driver

    stream = driver.CUstream(torch.cuda.current_stream().cuda_stream)
    _check(driver.cuLaunchKernel(function, *grid, *block, smem, stream, (args, types), 0))


# ------------------------------------------------------------------------------------------------
# quantize
# ------------------------------------------------------------------------------------------------


@cache
def had_scale(had_size: int) -> float:
    """The entries of the benchmark's bf16 Hadamard matrix are +-bf16(had_size**-0.5)."""
    return float(torch.tensor(had_size**-0.5).to(torch.bfloat16))


def quantize_nvfp4(
    x: torch.Tensor,
    had_size: int | None,
    global_scale: torch.Tensor,
    *,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate (had_size 16/32/64/128, None: none) and quantize bf16 x [rows, K] on the GPU.

    Returns (codes uint8 [rows, K/2], linear float8_e4m3fn scales [rows, K/16]), bit-equal to
    ``numerics.quantize_nvfp4`` up to fp32 summation-order ties. `global_scale`: fp32 tensor [1]."""
    r = had_size or 0
    if r and r not in HAD_SIZES:
        raise ValueError(f"had_size={had_size!r} not in {HAD_SIZES} (or None for no rotation)")
    rows, K = x.shape
    if K % 32 or (r and K % r):
        raise ValueError(f"K={K} must be a multiple of 32 and of had_size={had_size}")
    if x.dtype != torch.bfloat16 or not x.is_contiguous():
        raise ValueError(f"x must be contiguous bf16, got {x.dtype}")
    if out is None:
        out = (
            torch.empty(rows, K // 2, dtype=torch.uint8, device=x.device),
            torch.empty(rows, K // 16, dtype=torch.float8_e4m3fn, device=x.device),
        )
    codes, scales = out
    n_threads = rows * K // 32
    function, _ = _function(QuantVariant(r), x.device.index or 0)
    _launch(
        function,
        ((n_threads + 255) // 256, 1, 1),
        (256, 1, 1),
        0,
        (x.data_ptr(), global_scale.data_ptr(), had_scale(r) if r else 1.0, codes.data_ptr(),
         scales.data_ptr(), n_threads),
        (_PTR, _PTR, _FLOAT, _PTR, _PTR, _INT),
    )  # fmt: skip
    return codes, scales


# ------------------------------------------------------------------------------------------------
# the prepared weight
# ------------------------------------------------------------------------------------------------


# Where register p's magnitudes and signs sit in a prepared word: a left shift by MAG (SIGN) moves
# them to fp16 bits 9..11 (15) of both halves. Must match MAG_SHIFT / SIGN_SHIFT in nvfp4_cuda.cu;
# chosen (by search) so that a word decodes in 11 instructions instead of 15 for nibbles.
PAIR_SHIFTS = ((0, 0), (7, 7), (-3, 14), (4, 15))


def _fragment_index() -> tuple[torch.Tensor, torch.Tensor]:
    """For every (lane, register p, half h) of an m16n8k16 A fragment: its row in the 16-row tile
    and its k in the 16-wide k tile."""
    lane = torch.arange(32).view(32, 1, 1)
    p = torch.arange(4).view(1, 4, 1)
    h = torch.arange(2).view(1, 1, 2)
    g, t = lane // 4, lane % 4
    row = g + 8 * (p % 2)
    k = 2 * t + h + 8 * (p // 2)
    return row.expand(32, 4, 2), k.expand(32, 4, 2)


def _bit_positions() -> tuple[torch.Tensor, torch.Tensor]:
    """[4 registers, 2 halves]: bit of the lowest magnitude bit, and of the sign, in the word."""
    mag = torch.tensor([[9 - m + 16 * h for h in (0, 1)] for m, _ in PAIR_SHIFTS])
    sign = torch.tensor([[15 - s + 16 * h for h in (0, 1)] for _, s in PAIR_SHIFTS])
    return mag, sign


def permute_weight(packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """NVFP4 weight (codes uint8 [N, K/2], linear E4M3 scales [N, K/16]) -> the GEMM's layout.

    uint8 [N/16, K/64, 576]: per 16 rows x 64 k, lane l's 16 bytes are four 32-bit words (k tiles
    0..3) holding the 8 codes of its A fragment (register p's magnitudes and signs at the bits
    ``PAIR_SHIFTS`` gives); then 64 bytes of scales, 8 per fragment row group g: (row g, row g + 8)
    for k tiles 0..3. Same size as the input (0.5625 bytes per value). Needs N % 16 == 0 and
    K % 64 == 0."""
    N, K = packed.shape[0], packed.shape[1] * 2
    if N % 16 or K % 64:
        raise ValueError(f"the CUDA GEMM needs N % 16 == 0 and K % 64 == 0, got N={N}, K={K}")
    if scales.shape != (N, K // 16):
        raise ValueError(f"scales {tuple(scales.shape)} do not match codes {tuple(packed.shape)}")
    T, C = N // 16, K // 64
    out = torch.empty(T, C, CHUNK_BYTES, dtype=torch.uint8, device=packed.device)
    row, k = (i.to(packed.device) for i in _fragment_index())
    mag_bit, sign_bit = (i.to(packed.device) for i in _bit_positions())
    # In slices of row tiles: the int64 intermediates take 40 bytes per value (a whole 405B-class
    # layer at once would not fit beside the model's other tensors).
    step = max(1, 2**24 // (16 * K))
    for t0 in range(0, T, step):
        t1 = min(T, t0 + step)
        part = packed[16 * t0 : 16 * t1]
        codes = torch.stack([part & 0xF, part >> 4], dim=-1).reshape(-1, K).to(torch.int64)
        tiles = codes.view(t1 - t0, 16, C, 4, 16).permute(0, 2, 3, 1, 4)  # [t, C, kt, row, kk]
        picked = tiles[:, :, :, row, k]  # [t, C, 4, 32, 4, 2]
        words = ((picked & 7) << mag_bit) | ((picked >> 3) << sign_bit)
        words = words.sum(dim=(-1, -2))  # [t, C, 4 kt, 32 lanes]
        words = torch.where(words >= 2**31, words - 2**32, words)  # as int32 bit patterns
        words = words.transpose(2, 3).contiguous().to(torch.int32)  # [t, C, lane, kt]
        out[t0:t1, :, :512] = words.view(torch.uint8).view(t1 - t0, C, 512)
    s = scales.view(torch.uint8).view(T, 2, 8, C, 4)  # [T, row // 8, g, C, kt]
    out[:, :, 512:] = s.permute(0, 3, 2, 4, 1).reshape(T, C, 64)  # [T, C, g, kt, row // 8]
    return out


def unpermute_weight(prepared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``permute_weight``: (codes uint8 [N, K/2], scales float8_e4m3fn [N, K/16])."""
    T, C, _ = prepared.shape
    N, K = T * 16, C * 64
    words = prepared[..., :512].contiguous().view(torch.int32).view(T, C, 32, 4).to(torch.int64)
    words = words.transpose(2, 3)[..., None, None]  # [T, C, kt, lane, 1, 1]
    row, k = (i.to(prepared.device) for i in _fragment_index())
    mag_bit, sign_bit = (i.to(prepared.device) for i in _bit_positions())
    codes = torch.empty(T, C, 4, 16, 16, dtype=torch.int64, device=prepared.device)
    codes[:, :, :, row, k] = ((words >> mag_bit) & 7) | (((words >> sign_bit) & 1) << 3)
    codes = codes.permute(0, 3, 1, 2, 4).reshape(N, K)  # [T, row, C, kt, kk]
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).to(torch.uint8)
    s = prepared[..., 512:].reshape(T, C, 8, 4, 2).permute(0, 4, 2, 1, 3).reshape(N, K // 16)
    return packed, s.contiguous().view(torch.float8_e4m3fn)


# ------------------------------------------------------------------------------------------------
# GEMM
# ------------------------------------------------------------------------------------------------


def token_tiles(M: int, wgmma: bool) -> int:
    """MT: n8 token tiles per CTA, a power of two up to the largest variant of the kind (beyond,
    CTAs along M)."""
    largest = max(_WGMMA_SHAPES if wgmma else _MMA_SYNC_SHAPES)
    mt = 1
    while mt < largest and 8 * mt < M:
        mt *= 2
    return mt


@dataclass(frozen=True)
class GemmConfig:
    variant: GemmVariant
    k_splits: int
    ctas_x: int  # CTAs along N; each loops over every ctas_x-th block of WARPS * NT * 16 rows

    def __str__(self) -> str:
        v = self.variant
        kind = "wgmma-streamed" if v.streamed else "wgmma" if v.wgmma else "mma"
        return (
            f"cuda-{kind} mt{v.mt} nt{v.nt} w{v.warps} s{v.stages} "
            f"split{self.k_splits} ctas{self.ctas_x}"
        )

    __repr__ = __str__  # tuning logs print candidates with !r


def smem_bytes(variant: GemmVariant, k_slice: int) -> int:
    """The activation (the K-slice, or a ring of 64-k chunks when streamed) and the weight rings."""
    activation = variant.stages * 64 if variant.streamed else k_slice
    return variant.mt * activation * 16 + variant.warps * variant.stages * variant.nt * CHUNK_BYTES


def split_unit(variant: GemmVariant) -> int:
    """K splits are whole multiples of this: one 64-k chunk per set of A registers."""
    return 64 * variant.a_register_sets


def max_slice(K: int, k_splits: int, variant: GemmVariant) -> int:
    """The longest K-slice of a split: slices are whole split units, differing by at most one."""
    unit = split_unit(variant)
    return -(-(K // unit) // k_splits) * unit


def _blocks(M: int, N: int, variant: GemmVariant) -> tuple[int, int]:
    """(output blocks along N, along M)."""
    return -(-(N // 16) // (variant.nt * variant.warps)), -(-M // (8 * variant.mt))


def gemm_candidates(
    M: int, N: int, K: int, occupancy, sms: int, wgmma: bool = True
) -> list[GemmConfig]:
    """The tuning space for one (M, N, K). `occupancy(variant, smem_bytes)`: resident CTAs per SM
    (0 when it does not fit); `wgmma`: whether the device has it (``wgmma_arch``).

    For each shape variant and each wanted number of resident CTAs per SM (1, 2, 4, or as many as
    fit), the fewest K splits (any count: slices differ by at most one chunk, so the CTAs are
    balanced) that give that occupancy and fill it once or twice. Where the output blocks alone
    outnumber the slots, each CTA loops over an equal share of them instead, decoding its
    activation slice once."""
    out: list[GemmConfig] = []
    for variant in GEMM_VARIANTS:
        if variant.mt != token_tiles(M, variant.wgmma) or (N // 16) % variant.nt:
            continue
        if K % split_unit(variant):
            continue
        k_units = K // split_unit(variant)
        if variant.wgmma and not wgmma:
            continue
        n_blocks, m_blocks = _blocks(M, N, variant)
        blocks = n_blocks * m_blocks
        for per_sm in (1, 2, 4, None):
            if variant.streamed and per_sm and occupancy(variant, smem_bytes(variant, 0)) < per_sm:
                continue  # its shared memory does not shrink with more K splits
            for waves in (1, 2):
                # A shape too small to fill the slots gets every K chunk its own split.
                splits = 1
                while splits < k_units:
                    occ = occupancy(variant, smem_bytes(variant, max_slice(K, splits, variant)))
                    resident = occ if per_sm is None else min(occ, per_sm)
                    slots = sms * waves * resident
                    if resident and (per_sm is None or occ >= per_sm):
                        if blocks * splits >= 0.9 * slots:
                            break
                    splits += 1
                occ = occupancy(variant, smem_bytes(variant, max_slice(K, splits, variant)))
                if not occ:
                    continue
                slots = sms * waves * (occ if per_sm is None else min(occ, per_sm))
                share = max(1, blocks * splits // slots)
                config = GemmConfig(variant, splits, -(-n_blocks // share))
                if config not in out:
                    out.append(config)
    return out


class CudaGemm:
    """bf16 out [M, N] = alpha * A_dq @ W_dq^T for one (M, N, K) and configuration; buffers (split
    partials, block counters) are allocated once, so calls only launch (CUDA-graph safe)."""

    def __init__(self, M: int, N: int, K: int, config: GemmConfig, device: torch.device):
        v = config.variant
        unit = split_unit(v)
        if N % (16 * v.nt) or K % unit or not 1 <= config.k_splits <= K // unit:
            raise ValueError(f"{config} does not fit N={N}, K={K}")
        self.M, self.N, self.K, self.config = M, N, K, config
        self.max_slice = max_slice(K, config.k_splits, v)
        self.smem = smem_bytes(v, self.max_slice)
        n_blocks, m_blocks = _blocks(M, N, v)
        self.grid = (config.ctas_x, config.k_splits, m_blocks)
        self.block = (32 * v.warps, 1, 1)
        per_block = v.warps * v.nt * v.mt * 32 * 4
        splits = config.k_splits
        self.workspace = torch.empty(
            splits * n_blocks * m_blocks * per_block if splits > 1 else 1,
            dtype=torch.float32,
            device=device,
        )
        self.counters = torch.zeros(n_blocks * m_blocks, dtype=torch.int32, device=device)
        self.function, _ = _function(v, device.index or 0)
        if v.streamed:  # the activation in fp16, laid out for the B ring (2 bytes per value)
            self.decoded = torch.empty(
                m_blocks * 8 * v.mt * K * 2, dtype=torch.uint8, device=device
            )
            self.decode_function, _ = _function(v, device.index or 0, "nvfp4_decode_activation")
            self.decode_grid = (-(-K // 128), m_blocks, 1)

    def __call__(self, a_packed, a_scales, weight, alpha, out):
        activation = a_packed
        if self.config.variant.streamed:
            _launch(
                self.decode_function, self.decode_grid, self.block, 0,
                (a_packed.data_ptr(), a_scales.data_ptr(), self.decoded.data_ptr(), self.M, self.K),
                (_PTR, _PTR, _PTR, _INT, _INT),
            )  # fmt: skip
            activation = self.decoded
        _launch(
            self.function, self.grid, self.block, self.smem,
            (activation.data_ptr(), a_scales.data_ptr(), weight.data_ptr(), out.data_ptr(),
             self.workspace.data_ptr(), self.counters.data_ptr(), alpha.data_ptr(),
             self.M, self.N, self.K, self.max_slice),
            (_PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _INT, _INT, _INT, _INT),
        )  # fmt: skip
        return out


def _encode_choice(choice: tuple[GemmConfig, float]) -> dict:
    config, ms = choice
    return {**dataclasses.asdict(config.variant), "k_splits": config.k_splits,
            "ctas_x": config.ctas_x, "ms": ms}  # fmt: skip


def _decode_choice(stored: dict) -> tuple[GemmConfig, float]:
    variant = GemmVariant(**{f.name: stored[f.name] for f in dataclasses.fields(GemmVariant)})
    return GemmConfig(variant, stored["k_splits"], stored["ctas_x"]), stored["ms"]


# (M, N, K, device) -> (best configuration, its median ms): each shape is tuned once per process,
# and remembered on disk across processes (tuning.remembered).
_TUNED: dict[tuple, tuple[GemmConfig, float]] = {}


def occupancy(variant: GemmVariant, smem: int, device: torch.device) -> int:
    """Resident CTAs per SM of this variant with `smem` bytes of dynamic shared memory."""
    from cuda.bindings import driver

    function, _ = _function(variant, device.index or 0)
    limit = torch.cuda.get_device_properties(device).shared_memory_per_block_optin - 1024
    if smem > limit:
        return 0
    return _check(
        driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(function, 32 * variant.warps, smem)
    )


def tune_gemm(a_packed, a_scales, weight, N: int, K: int, alpha, *, rep_ms: float = 5.0,
              log=None) -> tuple[CudaGemm, float]:  # fmt: skip
    """The fastest of ``gemm_candidates`` for these operands, timed in CUDA-graph replays (median
    ms) on the first call for this (M, N, K, device) and remembered after. A candidate that fails
    to launch is skipped; each time goes to `log` if given."""
    M, device = a_packed.shape[0], a_packed.device
    key = (M, N, K, str(device))
    if key not in _TUNED:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        out = torch.empty(M, N, dtype=torch.bfloat16, device=device)

        def build(config: GemmConfig):  # buffers freed once timed: only the winner is rebuilt
            return partial(
                CudaGemm(M, N, K, config, device), a_packed, a_scales, weight, alpha, out
            )

        def choose() -> tuple[GemmConfig, float]:
            candidates = gemm_candidates(
                M, N, K, partial(occupancy, device=device), sms, wgmma_arch(device_arch(device))
            )
            config, _, ms = fastest(
                candidates, build, rep_ms=rep_ms, label=f"M={M} N={N} K={K}", log=log
            )
            return config, ms

        disk_key = {
            **device_key(device),
            "kernel": GemmVariant.kernel_name,
            "source": source_hash(Path(__file__).with_name("nvfp4_cuda.cu")),
            "tuner": source_hash(__file__),
            "M": M,
            "N": N,
            "K": K,
        }
        _TUNED[key] = remembered(disk_key, choose, encode=_encode_choice, decode=_decode_choice)
    config, ms = _TUNED[key]
    return CudaGemm(M, N, K, config, device), ms
