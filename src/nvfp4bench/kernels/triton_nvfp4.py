"""NVFP4 (E2M1 values, E4M3 scale per 16, fp32 global scale) + Hadamard kernels in Triton.

For GPUs without FP4 tensor cores (compute capability 8.0+, tuned on H100 sm_90). What they
compute is docs/nvfp4-spec.md and ``nvfp4bench.numerics`` (the reference):

* ``quantize_nvfp4(x, had_size, global_scale)``: one pass over bf16 x [M, K]: rotate each
  consecutive group of r = had_size elements by the bf16 Hadamard matrix (``tl.dot``, fp32
  accumulation), amax per 16, E4M3 scale (RNE, saturating; computed with integer bit operations so
  the Triton interpreter rounds exactly like the GPU), E2M1 codes by RNE against the scale as
  stored (``rounded_scale=True``), packed two per byte (element 2i in the low nibble). Returns
  packed uint8 [M, K/2] and linear E4M3 scales [M, K/16]; optionally the swizzled (cuBLAS /
  CUTLASS block-scaling) layout too.
* ``nvfp4_gemm(a, sa, b, sb, alpha)``: bf16 [M, N] = alpha * dequant(a) @ dequant(b)^T. No FP4
  math on Hopper: operands are decoded in registers to fp16 (E2M1 x E4M3 products are exact in fp16,
  as q * s * 2**-7, no rounding), multiplied on the tensor cores with fp32 accumulation (``tl.dot``)
  and rescaled by alpha * 2**14 at the end. Small M has a GEMV kernel (no tensor cores, fp32
  FMAs) and split-K. Equal to bf16(alpha * a_dq @ b_dq^T) computed in float64 up to the order of
  the fp32 accumulation.

E2M1 decode (both kernels): the code's 3 magnitude bits are put at fp16's exponent/mantissa
boundary, ``bits = mag << 9 | sign << 15``; as fp16 that reads q * 2**-14 (the E2M1 subnormal 0.5
becomes an fp16 subnormal, which fp16 arithmetic and the tensor cores keep). E4M3 decode likewise:
``(code << 7)`` as fp16 is s * 2**-8. With ``use_asm`` the E2M1 decode is 19 PTX instructions
per 4 bytes (8 values) instead of per-element integer code; the interpreter takes the Triton path.
"""

from __future__ import annotations

import os
from functools import partial

import torch
import triton
import triton.language as tl

from ..numerics import HAD_SIZES
from .tuning import device_key, fastest, remembered, source_hash

__all__ = [
    "HAD_SIZES",
    "GemmConfig",
    "default_gemm_config",
    "nvfp4_gemm",
    "quantize_nvfp4",
]

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# Decoded operands are q * s * 2**-7 (fp16); a product of two of them is 2**-14 too small.
_OPERAND_SHIFT = 2.0**14


# ------------------------------------------------------------------------------------------------
# element decoding / encoding helpers
# ------------------------------------------------------------------------------------------------


@triton.jit
def _e2m1_to_f16(packed, USE_ASM: tl.constexpr):
    """uint8 [.., n] -> (low nibbles, high nibbles) as fp16 [.., n], value q * 2**-14."""
    if USE_ASM:
        # 4 bytes in one register; prmt spreads bytes 0,1 (2,3) into the high byte of each 16-bit
        # lane, then each nibble's magnitude goes to bits 9-11 and its sign to bit 15.
        lo, hi = tl.inline_asm_elementwise(
            asm="""
            {
            .reg .b32 n01, n23, t0, t1, z;
            mov.b32 z, 0;
            prmt.b32 n01, $4, z, 0x1404;
            prmt.b32 n23, $4, z, 0x3424;
            shl.b32 t0, n01, 1;
            and.b32 t0, t0, 0x0E000E00;
            shl.b32 t1, n01, 4;
            and.b32 t1, t1, 0x80008000;
            or.b32 $0, t0, t1;
            shl.b32 t0, n23, 1;
            and.b32 t0, t0, 0x0E000E00;
            shl.b32 t1, n23, 4;
            and.b32 t1, t1, 0x80008000;
            or.b32 $1, t0, t1;
            shr.b32 t0, n01, 3;
            and.b32 t0, t0, 0x0E000E00;
            and.b32 t1, n01, 0x80008000;
            or.b32 $2, t0, t1;
            shr.b32 t0, n23, 3;
            and.b32 t0, t0, 0x0E000E00;
            and.b32 t1, n23, 0x80008000;
            or.b32 $3, t0, t1;
            }
            """,
            constraints="=r,=r,=r,=r,r",
            args=[packed],
            dtype=(tl.float16, tl.float16),
            is_pure=True,
            pack=4,
        )
    else:
        b = packed.to(tl.int16)
        lo = (((b & 7) << 9) | ((b & 8) << 12)).to(tl.float16, bitcast=True)
        hi = (((b & 0x70) << 5) | ((b & 0x80) << 8)).to(tl.float16, bitcast=True)
    return lo, hi


@triton.jit
def _e4m3_to_f16_x128(code):
    """uint8 E4M3 code (non-negative) -> fp16 value s * 2**7 (exact: s <= 448 -> 57344)."""
    c = code.to(tl.int16)
    return ((c << 7) & 0x3F80).to(tl.float16, bitcast=True) * 32768.0


@triton.jit
def _dequant_operand(packed, scales, USE_ASM: tl.constexpr):
    """packed uint8 [ROWS, BLOCK_K/16, 8] (8 bytes = one 16-block), scale codes [ROWS, BLOCK_K/16]
    -> (even, odd) elements as fp16 [ROWS, BLOCK_K/16, 8], value q * s * 2**-7 (exact)."""
    lo, hi = _e2m1_to_f16(packed, USE_ASM)
    s = _e4m3_to_f16_x128(scales)[:, :, None]
    return lo * s, hi * s


@triton.jit
def _to_bf16(x):
    """fp32 -> bf16, round to nearest even, done on the bits: the interpreter's cast truncates."""
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return bits.to(tl.float32, bitcast=True).to(tl.bfloat16)


@triton.jit
def _e4m3_encode(sf):
    """fp32 sf >= 0 -> (E4M3 code int32, its value fp32): RNE, saturating at 448.

    Integer arithmetic instead of ``.to(tl.float8e4nv)`` because the interpreter's cast neither
    saturates nor rounds subnormals to even."""
    sf = tl.minimum(sf, 448.0)
    bits = sf.to(tl.int32, bitcast=True)
    r = (bits + 0x7FFFF + ((bits >> 20) & 1)) & -1048576  # mantissa rounded to 3 bits (RNE)
    code_n = (((r >> 23) - 120) << 3) | ((r >> 20) & 7)
    m = (sf * 512.0 + 8388608.0) - 8388608.0  # subnormal: rint(sf / 2**-9), ties to even
    sub = sf < 0.015625
    code = tl.where(sub, m.to(tl.int32), code_n)
    value = tl.where(sub, m * 0.001953125, r.to(tl.float32, bitcast=True))
    return code, value


@triton.jit
def _e2m1_encode(v):
    """fp32 -> E2M1 code (int32 0..15), RNE, saturating at +-6, sign from v's sign bit.

    One FFMA does the rounding: the grid has spacing 0.5 on [0, 2], 1 on [2, 4], 2 on [4, 6], so
    a * f + (1.5 * 2**23 + off) with (f, off) = (2, 0), (1, 2), (0.5, 4) rounds a * f to an integer
    (RNE, the FPU's rounding) plus the index offset, and the integer is in the low mantissa bits.
    Offsets are even, so ties still go to the even code."""
    a = tl.minimum(tl.abs(v), 8.0)
    lt2 = a < 2.0
    lt4 = a < 4.0
    f = tl.where(lt2, 2.0, tl.where(lt4, 1.0, 0.5))
    magic = tl.where(lt2, 12582912.0, tl.where(lt4, 12582914.0, 12582916.0))
    idx = tl.minimum((a * f + magic).to(tl.int32, bitcast=True) & 15, 7)
    sign = (v.to(tl.int32, bitcast=True) >> 28) & 8
    return idx | sign


# ------------------------------------------------------------------------------------------------
# fused rotate + quantize
# ------------------------------------------------------------------------------------------------


@triton.jit
def _quantize_kernel(
    x_ptr, h_ptr, gs_ptr, q_ptr, s_ptr, sw_ptr,
    n_groups, groups_per_row, sw_col_blocks,
    R: tl.constexpr, BLOCK_G: tl.constexpr, ROTATE: tl.constexpr,
    WRITE_LINEAR: tl.constexpr, WRITE_SWIZZLED: tl.constexpr, DOT_F32: tl.constexpr,
):  # fmt: skip
    """x viewed as [n_groups, R] (contiguous rows of R elements): y = x @ H per row, then NVFP4.

    Grid-stride over tiles of BLOCK_G groups so that H is loaded once per program."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    offs_g = tl.arange(0, BLOCK_G)
    offs_r = tl.arange(0, R)
    if ROTATE:
        h = tl.load(h_ptr + offs_r[:, None] * R + offs_r[None, :])
    gs = tl.load(gs_ptr)
    num_tiles = tl.cdiv(n_groups, BLOCK_G)
    for tile in range(pid, num_tiles, nprog):
        g = tile * BLOCK_G + offs_g
        gmask = g < n_groups
        g64 = g.to(tl.int64)
        x = tl.load(x_ptr + g64[:, None] * R + offs_r[None, :], mask=gmask[:, None], other=0.0)
        if ROTATE:
            if DOT_F32:  # the interpreter's bf16 dot is wrong (triton 3.9); fp32 is exact here
                y = tl.dot(x.to(tl.float32), h.to(tl.float32))
            else:
                y = tl.dot(x, h, out_dtype=tl.float32)
        else:
            y = x.to(tl.float32)
        y3 = tl.reshape(y, (BLOCK_G, R // 16, 16))
        amax = tl.max(tl.abs(y3), axis=2)
        sf = tl.math.div_rn(gs * amax, 6.0)
        s_code, s_val = _e4m3_encode(sf)
        zero = s_val == 0.0
        inv = tl.math.div_rn(1.0, tl.math.div_rn(tl.where(zero, 1.0, s_val), gs))
        inv = tl.where(zero, 0.0, inv)
        codes = _e2m1_encode(y3 * inv[:, :, None])
        lo, hi = tl.split(tl.reshape(codes, (BLOCK_G, R // 2, 2)))
        packed = (lo | (hi << 4)).to(tl.uint8)
        offs_b = tl.arange(0, R // 2)
        tl.store(q_ptr + g64[:, None] * (R // 2) + offs_b[None, :], packed, mask=gmask[:, None])
        offs_s = tl.arange(0, R // 16)
        s_u8 = s_code.to(tl.uint8)
        if WRITE_LINEAR:
            tl.store(s_ptr + g64[:, None] * (R // 16) + offs_s[None, :], s_u8, mask=gmask[:, None])
        if WRITE_SWIZZLED:
            row = g64 // groups_per_row
            col = (g64 % groups_per_row)[:, None] * (R // 16) + offs_s[None, :]
            r128 = (row % 128)[:, None]
            off = (
                ((row // 128)[:, None] * sw_col_blocks + col // 4) * 512
                + (r128 % 32) * 16
                + (r128 // 32) * 4
                + col % 4
            )
            tl.store(sw_ptr + off, s_u8, mask=gmask[:, None])


_HADAMARD_CACHE: dict = {}


def hadamard_bf16(had_size: int, device=None) -> torch.Tensor:
    """Sylvester Hadamard (+-1) in bf16 times had_size**-0.5, rounded once to bf16: the same
    matrix as ``numerics.hadamard_matrix`` (compressed-tensors' deterministic_hadamard_matrix *
    r**-0.5), built here so the kernels need no compressed-tensors at run time."""
    h = torch.ones(1, 1)
    while h.shape[0] < had_size:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h.to(torch.bfloat16) * had_size**-0.5).to(device).contiguous()


def _hadamard(had_size: int, device) -> torch.Tensor:
    key = (had_size, str(device))
    if key not in _HADAMARD_CACHE:
        _HADAMARD_CACHE[key] = hadamard_bf16(had_size, device)
    return _HADAMARD_CACHE[key]


def _num_sms(device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def swizzled_shape(rows: int, k: int) -> tuple[int, int]:
    """[ceil(rows/128)*128, ceil(K/16/4)*4]: the padded swizzled scale tensor."""
    return -(-rows // 128) * 128, -(-(k // 16) // 4) * 4


QUANT_CANDIDATES = [  # (block_elems, num_warps, programs_per_sm, num_stages)
    (2048, 4, 32, 3), (4096, 4, 16, 3), (4096, 8, 16, 3), (8192, 8, 8, 3), (2048, 2, 32, 3),
    (2048, 2, 64, 3), (1024, 1, 64, 3),
]  # fmt: skip
_TUNED_QUANT: dict = {}


def tuned_quant_config(x: torch.Tensor, had_size: int | None, *, rep_ms: float = 5.0,
                       verbose: bool = False, log=print) -> dict:  # fmt: skip
    """Best of QUANT_CANDIDATES for (had_size, K, M bucket), timed once and cached."""
    K = x.shape[-1]
    M = x.numel() // K
    if x.device.type != "cuda" or INTERPRET:
        return {}
    key = (had_size, K, 1 << max(M - 1, 1).bit_length(), str(x.device))
    if key not in _TUNED_QUANT:
        gs = torch.ones(1, dtype=torch.float32, device=x.device)
        candidates = [
            dict(block_elems=be, num_warps=nw, programs_per_sm=ps, num_stages=ns)
            for be, nw, ps, ns in QUANT_CANDIDATES
            if be // (had_size or 16) >= 16
        ]

        def choose() -> dict:
            try:
                kw, _, _ = fastest(
                    candidates,
                    lambda kw: partial(quantize_nvfp4, x, had_size, gs, **kw),
                    rep_ms=rep_ms,
                    label=f"quantize r={had_size} M={M} K={K}",
                    log=log if verbose else None,
                )
            except RuntimeError:  # none ran: the kernel's own defaults
                kw = {}
            return kw

        disk_key = {**device_key(x.device), "kernel": "triton_nvfp4_quantize",
                    "source": source_hash(__file__), "had": had_size, "K": K,
                    "M": key[2]}  # fmt: skip
        _TUNED_QUANT[key] = remembered(disk_key, choose)
    return dict(_TUNED_QUANT[key])


def quantize_nvfp4(
    x: torch.Tensor,
    had_size: int | None,
    global_scale: torch.Tensor | float = 1.0,
    *,
    linear: bool = True,
    swizzled: bool = False,
    out: tuple | None = None,
    block_elems: int = 4096,
    num_warps: int = 4,
    programs_per_sm: int = 16,
    num_stages: int = 3,
):
    """Rotate (had_size in 16/32/64/128, or None/0 for none) and quantize bf16 x [..., K].

    Returns ``(packed uint8 [..., K/2], scales)`` where scales is the linear float8_e4m3fn
    [..., K/16] (``linear=True``), the swizzled padded [ceil(M/128)*128, ceil(K/64)*4]
    (``swizzled=True`` only), or a (linear, swizzled) pair (both). `global_scale`: float or fp32
    tensor of one element (stays on the device: no sync). `out`: preallocated outputs in the same
    structure. Swizzle padding is not written (as qutlass): zero it yourself if it matters.
    """
    if not (linear or swizzled):
        raise ValueError("ask for linear and/or swizzled scales")
    K = x.shape[-1]
    r = had_size or 16
    if had_size and had_size not in HAD_SIZES:
        raise ValueError(f"had_size={had_size!r} not in {HAD_SIZES} (or None for no rotation)")
    if K % 16 or K % r:
        raise ValueError(f"K={K} must be a multiple of 16 and of had_size={had_size}")
    if x.dtype != torch.bfloat16:
        raise ValueError(f"x must be bf16, got {x.dtype}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K).contiguous()
    M = x2.shape[0]
    dev = x.device
    if not isinstance(global_scale, torch.Tensor):
        global_scale = torch.tensor([float(global_scale)], dtype=torch.float32, device=dev)
    gs = global_scale.reshape(1).to(torch.float32)
    if out is None:
        packed = torch.empty(M, K // 2, dtype=torch.uint8, device=dev)
        s_lin = torch.empty(M, K // 16, dtype=torch.float8_e4m3fn, device=dev) if linear else None
        s_sw = (
            torch.empty(swizzled_shape(M, K), dtype=torch.float8_e4m3fn, device=dev)
            if swizzled
            else None
        )
    else:
        packed, rest = out[0], out[1]
        s_lin, s_sw = rest if linear and swizzled else ((rest, None) if linear else (None, rest))
    if swizzled and K % 64:
        raise ValueError(f"K={K} must be a multiple of 64 for the swizzled scale layout")
    h = _hadamard(r, dev) if had_size else packed  # dummy pointer when not rotating
    n_groups = M * K // r
    block_g = max(16, block_elems // r)
    tiles = triton.cdiv(n_groups, block_g)
    grid = (max(1, min(tiles, _num_sms(dev) * programs_per_sm)),)
    dummy = packed
    _quantize_kernel[grid](
        x2, h, gs, packed,
        s_lin.view(torch.uint8) if linear else dummy,
        s_sw.view(torch.uint8) if swizzled else dummy,
        n_groups, K // r, swizzled_shape(M, K)[1] // 4,
        R=r, BLOCK_G=block_g, ROTATE=bool(had_size),
        WRITE_LINEAR=linear, WRITE_SWIZZLED=swizzled, DOT_F32=INTERPRET,
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    packed = packed.reshape(*lead, K // 2)
    if linear:
        s_lin = s_lin.reshape(*lead, K // 16)
    if linear and swizzled:
        return packed, (s_lin, s_sw)
    return packed, (s_lin if linear else s_sw)


# ------------------------------------------------------------------------------------------------
# GEMM: tensor-core path
# ------------------------------------------------------------------------------------------------


@triton.jit
def _gemm_kernel(
    a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, ws_ptr, alpha_ptr,
    M, N, K,
    stride_am, stride_asm, stride_bn, stride_bsn, stride_cm,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr, GROUP_M: tl.constexpr, SWAP_AB: tl.constexpr,
    USE_ASM: tl.constexpr, B_PLANES: tl.constexpr, A_PLANES: tl.constexpr,
):  # fmt: skip
    """C[M, N] = alpha * A_dq @ B_dq^T. SWAP_AB computes the transposed tile B_dq @ A_dq^T, so that
    the weight rows fill the MMA's M side when M is small. SPLIT_K > 1 writes fp32 partial sums
    to ws [SPLIT_K, M, N] (reduced by _splitk_reduce_kernel).

    B_PLANES: b_ptr is B already decoded (``_planes_kernel``), fp16 [2, N, K/2] (even elements,
    odd elements; value q * s * 2**-7; stride_bn in elements), loaded straight into shared memory
    by the software pipeline; only A is decoded here. A_PLANES likewise for A (then the loop is a
    plain fp16 GEMM)."""
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = (offs_m % M).to(tl.int64)  # out-of-range rows re-read valid ones; masked at the store
    rn = (offs_n % N).to(tl.int64)
    kb0 = pid_k * (BLOCK_K // 2)
    ks0 = pid_k * (BLOCK_K // 16)
    # bytes as [rows, block, 8]: a 16-block's 8 bytes stay together in one thread's registers
    offs_kb = (tl.arange(0, BLOCK_K // 16)[:, None] * 8 + tl.arange(0, 8)[None, :])[None, :, :]
    offs_ks = tl.arange(0, BLOCK_K // 16)
    if A_PLANES:
        offs_ka = tl.arange(0, BLOCK_K // 2)
        a_ptrs = a_ptr + rm[:, None] * stride_am + kb0 + offs_ka[None, :]
        plane_a = M.to(tl.int64) * stride_am
    else:
        a_ptrs = a_ptr + rm[:, None, None] * stride_am + kb0 + offs_kb
        as_ptrs = as_ptr + rm[:, None] * stride_asm + ks0 + offs_ks[None, :]
    if B_PLANES:
        offs_kh = tl.arange(0, BLOCK_K // 2)
        b_ptrs = b_ptr + rn[:, None] * stride_bn + kb0 + offs_kh[None, :]
        plane = N.to(tl.int64) * stride_bn
    else:
        b_ptrs = b_ptr + rn[:, None, None] * stride_bn + kb0 + offs_kb
        bs_ptrs = bs_ptr + rn[:, None] * stride_bsn + ks0 + offs_ks[None, :]

    if SWAP_AB:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_tiles = K // BLOCK_K
    for _ in range(pid_k, k_tiles, SPLIT_K):
        if B_PLANES:
            b_lo = tl.load(b_ptrs)
            b_hi = tl.load(b_ptrs + plane)
        else:
            b = tl.load(b_ptrs)
            sb = tl.load(bs_ptrs)
            b_lo, b_hi = _dequant_operand(b, sb, USE_ASM)
            b_lo = tl.reshape(b_lo, (BLOCK_N, BLOCK_K // 2))
            b_hi = tl.reshape(b_hi, (BLOCK_N, BLOCK_K // 2))
            bs_ptrs += SPLIT_K * (BLOCK_K // 16)
        if A_PLANES:
            a_lo = tl.load(a_ptrs)
            a_hi = tl.load(a_ptrs + plane_a)
        else:
            a = tl.load(a_ptrs)
            sa = tl.load(as_ptrs)
            a_lo, a_hi = _dequant_operand(a, sa, USE_ASM)
            a_lo = tl.reshape(a_lo, (BLOCK_M, BLOCK_K // 2))
            a_hi = tl.reshape(a_hi, (BLOCK_M, BLOCK_K // 2))
            as_ptrs += SPLIT_K * (BLOCK_K // 16)
        if SWAP_AB:
            acc = tl.dot(b_lo, tl.trans(a_lo), acc)
            acc = tl.dot(b_hi, tl.trans(a_hi), acc)
        else:
            acc = tl.dot(a_lo, tl.trans(b_lo), acc)
            acc = tl.dot(a_hi, tl.trans(b_hi), acc)
        a_ptrs += SPLIT_K * (BLOCK_K // 2)
        b_ptrs += SPLIT_K * (BLOCK_K // 2)

    if SWAP_AB:
        acc = tl.trans(acc)
    om = offs_m.to(tl.int64)[:, None]
    on = offs_n.to(tl.int64)[None, :]
    mask = (om < M) & (on < N)
    if SPLIT_K == 1:
        alpha = tl.load(alpha_ptr) * 16384.0
        tl.store(c_ptr + om * stride_cm + on, _to_bf16(acc * alpha), mask=mask)
    else:
        tl.store(ws_ptr + (pid_k * M + om) * N + on, acc, mask=mask)


@triton.jit
def _planes_kernel(p_ptr, s_ptr, out_ptr, n_blocks, plane, BLOCK: tl.constexpr,
                   USE_ASM: tl.constexpr):  # fmt: skip
    """Decode NVFP4 (packed [R, K/2] + linear scales [R, K/16], both contiguous) to fp16 planes
    out[0] = even elements, out[1] = odd elements, each [R, K/2], value q * s * 2**-7 (exact).
    Viewed flat, 16-block g is bytes 8g..8g+7 and scale g: no row arithmetic needed."""
    offs_g = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs_g < n_blocks
    offs = offs_g[:, None] * 8 + tl.arange(0, 8)[None, :]
    packed = tl.load(p_ptr + offs, mask=mask[:, None], other=0)
    sc = tl.load(s_ptr + offs_g, mask=mask, other=0)
    lo, hi = _e2m1_to_f16(packed, USE_ASM)
    s = _e4m3_to_f16_x128(sc)[:, None]
    lo = lo * s
    hi = hi * s
    tl.store(out_ptr + offs, lo, mask=mask[:, None])
    tl.store(out_ptr + plane + offs, hi, mask=mask[:, None])


@triton.jit
def _splitk_reduce_kernel(ws_ptr, c_ptr, alpha_ptr, MN, N, stride_cm,
                          SPLIT_K: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """c = bf16(alpha * 2**14 * sum_s ws[s]) in a fixed order (deterministic)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < MN
    acc = tl.load(ws_ptr + offs, mask=mask, other=0.0)
    for s in tl.static_range(1, SPLIT_K):
        acc += tl.load(ws_ptr + s * MN + offs, mask=mask, other=0.0)
    alpha = tl.load(alpha_ptr) * 16384.0
    row = offs // N
    col = offs % N
    tl.store(c_ptr + row * stride_cm + col, _to_bf16(acc * alpha), mask=mask)


# ------------------------------------------------------------------------------------------------
# GEMM: GEMV path for tiny M (CUDA cores, no tensor cores)
# ------------------------------------------------------------------------------------------------


@triton.jit
def _add_f16(x, y):
    return x + y


@triton.jit
def _gemv_kernel(
    a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, ws_ptr, alpha_ptr,
    M, N, K,
    stride_am, stride_asm, stride_bn, stride_bsn, stride_cm,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr, USE_ASM: tl.constexpr, MODE: tl.constexpr,
):  # fmt: skip
    """One activation row (program_id 0, fastest: the rows sharing a weight tile run together and
    the weight is read from DRAM once) against BLOCK_N weight rows on the CUDA cores.

    MODE 0: elementwise fp32 accumulation acc[n, blk, j] += q_b * (s_b * a_dq), one reduction at
    the end. MODE 1: fp32 sum over each 16-block, then times s_b. MODE 2: E2M1 x E2M1 products and
    their sums over each half block (8 values) in fp16 - exact: |sum| <= 8 * 18 in steps of 1/8 -
    then fp32 times s_a * s_b."""
    m = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rn = (offs_n % N).to(tl.int64)
    kb0 = pid_k * (BLOCK_K // 2)
    ks0 = pid_k * (BLOCK_K // 16)
    offs_blk = tl.arange(0, BLOCK_K // 16)
    offs_kb = offs_blk[:, None] * 8 + tl.arange(0, 8)[None, :]
    a_ptrs = a_ptr + m * stride_am + kb0 + offs_kb
    as_ptrs = as_ptr + m * stride_asm + ks0 + offs_blk
    b_ptrs = b_ptr + rn[:, None, None] * stride_bn + kb0 + offs_kb[None, :, :]
    bs_ptrs = bs_ptr + rn[:, None] * stride_bsn + ks0 + offs_blk[None, :]

    if MODE == 0:
        acc = tl.zeros((BLOCK_N, BLOCK_K // 16, 8), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_N, BLOCK_K // 16), dtype=tl.float32)
    k_tiles = K // BLOCK_K
    for _ in range(pid_k, k_tiles, SPLIT_K):
        b = tl.load(b_ptrs)
        sb = tl.load(bs_ptrs)
        a = tl.load(a_ptrs)
        sa = tl.load(as_ptrs)
        # activation q_a * 2**-14, weight q_b * 2**-14 (fp16), scales s * 2**7 (fp32)
        a_lo, a_hi = _e2m1_to_f16(a, USE_ASM)
        b_lo, b_hi = _e2m1_to_f16(b, USE_ASM)
        s_a = _e4m3_to_f16_x128(sa).to(tl.float32)
        s_b = _e4m3_to_f16_x128(sb).to(tl.float32)
        if MODE == 0:
            w_lo = (a_lo.to(tl.float32) * s_a[:, None])[None, :, :] * s_b[:, :, None]
            w_hi = (a_hi.to(tl.float32) * s_a[:, None])[None, :, :] * s_b[:, :, None]
            acc += b_lo.to(tl.float32) * w_lo
            acc += b_hi.to(tl.float32) * w_hi
        elif MODE == 1:
            p = (
                b_lo.to(tl.float32) * (a_lo.to(tl.float32) * s_a[:, None])[None, :, :]
                + b_hi.to(tl.float32) * (a_hi.to(tl.float32) * s_a[:, None])[None, :, :]
            )
            acc += tl.sum(p, axis=2) * s_b
        else:
            # q_a * 2**13 in fp16 (<= 49152): products q_a * q_b / 2, exact
            a_lo = (a_lo.to(tl.float32) * 134217728.0).to(tl.float16)
            a_hi = (a_hi.to(tl.float32) * 134217728.0).to(tl.float16)
            t_lo = tl.reduce(b_lo * a_lo[None, :, :], 2, _add_f16)
            t_hi = tl.reduce(b_hi * a_hi[None, :, :], 2, _add_f16)
            # (q_a q_b / 2) * (s_a 2**7)(s_b 2**7) * 2**-27 = q_a q_b s_a s_b * 2**-14
            t = t_lo.to(tl.float32) + t_hi.to(tl.float32)
            acc += t * (s_b * (s_a * 7.450580596923828e-09)[None, :])
        a_ptrs += SPLIT_K * (BLOCK_K // 2)
        b_ptrs += SPLIT_K * (BLOCK_K // 2)
        as_ptrs += SPLIT_K * (BLOCK_K // 16)
        bs_ptrs += SPLIT_K * (BLOCK_K // 16)

    # acc = dot * 2**-14 (a: 2**-14, s_a and s_b: 2**7 each, b: 2**-14)
    if MODE == 0:
        out = tl.sum(tl.sum(acc, axis=2), axis=1)
    else:
        out = tl.sum(acc, axis=1)
    on = offs_n.to(tl.int64)
    mask = on < N
    if SPLIT_K == 1:
        alpha = tl.load(alpha_ptr) * 16384.0
        tl.store(c_ptr + m * stride_cm + on, _to_bf16(out * alpha), mask=mask)
    else:
        tl.store(ws_ptr + (pid_k * M + m) * N + on, out, mask=mask)


# ------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------


class GemmConfig(dict):
    """kernel ('mma' | 'gemv'), block_m, block_n, block_k, split_k, group_m, swap_ab, use_asm,
    num_warps, num_stages. A dict so that benchmark sweeps can print and vary it."""

    def __repr__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.items())


def _pow2_at_least(n: int, lo: int) -> int:
    p = lo
    while p < n:
        p *= 2
    return p


def _gemv(bn, bk, mode=2, split=1, warps=4, stages=1):
    return GemmConfig(kernel="gemv", block_n=bn, block_k=bk, split_k=split, mode=mode,
                      use_asm=True, num_warps=warps, num_stages=stages)  # fmt: skip


def _mma(bm, bn, bk, swap, split=1, warps=4, stages=4, planes=False, group=8, a_planes=False):
    return GemmConfig(kernel="mma", block_m=bm, block_n=bn, block_k=bk, split_k=split,
                      group_m=group, swap_ab=swap, b_planes=planes, a_planes=a_planes,
                      use_asm=True, num_warps=warps, num_stages=stages)  # fmt: skip


def gemm_candidates(M: int, N: int, K: int) -> list[GemmConfig]:
    """The small tuning space per batch size (H100); the first entry is the untuned default.

    Winners of the first H100 sweep (NOTES.md) first. `b_planes` / `a_planes`: that operand is
    decoded to fp16 by a separate pass each call (2 extra bytes written + read per element) so
    the GEMM loop loads it straight into shared memory instead of decoding it in registers."""
    if M == 1:
        return [_gemv(16, 512, mode=1), _gemv(16, 512), _gemv(16, 512, stages=3),
                _gemv(16, 512, mode=1, stages=3), _gemv(32, 512, warps=8, stages=3),
                _gemv(16, 256, split=2, stages=3)]  # fmt: skip
    if M <= 4:
        return [_mma(16, 128, 256, True), _mma(16, 64, 256, True), _gemv(16, 512),
                _gemv(16, 512, stages=3), _mma(16, 128, 256, True, split=2)]  # fmt: skip
    if M <= 64:
        bm = _pow2_at_least(M, 16)
        return [_mma(bm, 128, 256, True, split=2), _mma(bm, 128, 128, True),
                _mma(bm, 64, 256, True, split=2), _mma(bm, 128, 256, True, split=2, stages=3),
                _mma(bm, 128, 128, True, split=2), _mma(bm, 64, 128, True, split=4)]  # fmt: skip
    both = dict(planes=True, a_planes=True)
    if M <= 512:
        return [_mma(128, 128, 128, True, warps=8), _mma(64, 128, 128, True),
                _mma(128, 128, 128, False, warps=8, stages=3),
                _mma(128, 128, 128, False, warps=8, stages=3, **both),
                _mma(64, 128, 128, False, warps=4, stages=4, **both),
                _mma(128, 64, 128, False, warps=4, stages=4, **both)]  # fmt: skip
    cands = [_mma(128, 128, 128, False, warps=8, stages=3, **both),
             _mma(128, 256, 64, False, warps=8, stages=3, **both),
             _mma(128, 128, 64, False, warps=4, stages=4, **both),
             _mma(128, 256, 128, False, warps=8, stages=2, **both),
             _mma(128, 128, 128, False, warps=8, stages=4, **both)]  # fmt: skip
    return cands


def default_gemm_config(M: int, N: int, K: int, device: torch.device | None = None) -> GemmConfig:
    """The untuned configuration (first candidate); tiny tiles under the interpreter."""
    if INTERPRET or (device is not None and device.type != "cuda"):
        if M == 1:
            return GemmConfig(kernel="gemv", block_n=16, block_k=64, split_k=1, mode=2,
                              use_asm=False, num_warps=4, num_stages=1)  # fmt: skip
        return GemmConfig(kernel="mma", block_m=16, block_n=16, block_k=64, split_k=1,
                          group_m=8, swap_ab=M <= 16, b_planes=False, use_asm=False,
                          num_warps=4, num_stages=1)  # fmt: skip
    return gemm_candidates(M, N, K)[0]


def _m_bucket(M: int) -> int:
    return M if M <= 64 else _pow2_at_least(M, 128)


_TUNED: dict = {}
LAST_KERNEL: list = [None]  # the last GEMM launch's compiled kernel (registers, spills, smem)


def tuned_gemm_config(a_packed, a_scales, b_packed, b_scales, *, rep_ms: float = 5.0,
                      verbose: bool = False, log=print) -> GemmConfig:  # fmt: skip
    """Best of gemm_candidates for this (M bucket, N, K, device), timed once with
    tuning.time_graph (CUDA-graph replays, median) on the given operands, then cached (like
    triton.autotune).
    A candidate that fails to compile or launch (e.g. out of shared memory) is skipped."""
    M, N, K = a_packed.shape[0], b_packed.shape[0], a_packed.shape[1] * 2
    dev = a_packed.device
    if dev.type != "cuda" or INTERPRET:
        return default_gemm_config(M, N, K, dev)
    key = (_m_bucket(M), N, K, str(dev))
    if key not in _TUNED:
        out = torch.empty(M, N, dtype=torch.bfloat16, device=dev)
        alpha = torch.ones(1, dtype=torch.float32, device=dev)  # a host scalar can't be captured

        def choose() -> GemmConfig:
            config, _, _ = fastest(
                gemm_candidates(M, N, K),
                lambda cfg: partial(
                    nvfp4_gemm, a_packed, a_scales, b_packed, b_scales, alpha, out=out, config=cfg
                ),  # fmt: skip
                rep_ms=rep_ms,
                label=f"M={M} N={N} K={K}",
                log=log if verbose else None,
            )
            return config

        disk_key = {**device_key(dev), "kernel": "triton_nvfp4_gemm",
                    "source": source_hash(__file__), "M": key[0], "N": N, "K": K}  # fmt: skip
        _TUNED[key] = remembered(disk_key, choose, encode=dict, decode=GemmConfig)
    return GemmConfig(_TUNED[key])


def _check_operand(name, packed, scales, K=None):
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(
            f"{name}: packed codes must be uint8 [rows, K/2], got {packed.dtype} "
            f"{tuple(packed.shape)}"
        )
    if packed.stride(1) != 1 or scales.stride(1) != 1:
        raise ValueError(f"{name}: codes and scales must be contiguous along K")
    rows, kh = packed.shape
    if scales.shape[0] < rows or scales.shape[1] * 8 < kh:
        raise ValueError(
            f"{name}: scales {tuple(scales.shape)} too small for codes "
            f"{tuple(packed.shape)} (need linear [rows, K/16])"
        )
    return rows, kh * 2


def decode_planes(packed: torch.Tensor, scales: torch.Tensor, *, use_asm: bool = False):
    """fp16 [2, R, K/2]: even / odd elements of dequant(packed, scales) * 2**-7 (exact)."""
    R, K = packed.shape[0], packed.shape[1] * 2
    if not (packed.is_contiguous() and scales.is_contiguous() and scales.shape[1] * 16 == K):
        raise ValueError(
            "decode_planes needs contiguous codes [R, K/2] and linear scales [R, K/16]"
        )
    out = torch.empty(2, R, K // 2, dtype=torch.float16, device=packed.device)
    n_blocks = R * K // 16
    block = 256
    _planes_kernel[(triton.cdiv(n_blocks, block),)](
        packed, scales.view(torch.uint8), out, n_blocks, R * K // 2, BLOCK=block,
        USE_ASM=use_asm and not INTERPRET, num_warps=4,
    )  # fmt: skip
    return out


def nvfp4_gemm(
    a_packed: torch.Tensor,
    a_scales: torch.Tensor,
    b_packed: torch.Tensor,
    b_scales: torch.Tensor,
    alpha: torch.Tensor | float = 1.0,
    *,
    out: torch.Tensor | None = None,
    config: dict | str | None = None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:
    """bf16 [M, N] = alpha * (a_q * a_s) @ (b_q * b_s)^T, fp32 accumulation.

    a_packed uint8 [M, K/2], a_scales e4m3 linear [M, K/16] (row-major, as quantize_nvfp4 and
    numerics.quantize_nvfp4 return them), b likewise [N, ...]; alpha: float or fp32 tensor of one
    element (= 1 / (gs_a * gs_b) for globally scaled operands). K: a multiple of 32 (block_k is
    halved until it divides K). `config`: a GemmConfig / dict, "tuned" (tuned_gemm_config: best
    of gemm_candidates, timed on the first call per shape) or None (default_gemm_config).
    """
    M, K = _check_operand("a", a_packed, a_scales)
    N, Kb = _check_operand("b", b_packed, b_scales)
    if K != Kb:
        raise ValueError(f"K mismatch: a has {K}, b has {Kb}")
    dev = a_packed.device
    if config == "tuned":
        config = tuned_gemm_config(a_packed, a_scales, b_packed, b_scales)
    cfg = GemmConfig(config or default_gemm_config(M, N, K, dev))
    bk = cfg["block_k"]
    while K % (bk * cfg.get("split_k", 1)) and bk > 32:  # fall back to a block that divides K
        bk //= 2
        cfg["block_k"] = bk
    if K % bk:
        raise ValueError(f"K={K} is not a multiple of 32")
    if not isinstance(alpha, torch.Tensor):
        alpha = torch.tensor([float(alpha)], dtype=torch.float32, device=dev)
    alpha = alpha.reshape(1).to(torch.float32)
    if out is None:
        out = torch.empty(M, N, dtype=torch.bfloat16, device=dev)
    split_k = cfg.get("split_k", 1)
    split_k = max(1, min(split_k, K // bk))
    ws = None
    if split_k > 1:
        need = split_k * M * N
        ws = workspace if workspace is not None and workspace.numel() >= need else None
        if ws is None:
            ws = torch.empty(need, dtype=torch.float32, device=dev)
    a_s = a_scales.view(torch.uint8)
    b_s = b_scales.view(torch.uint8)
    args = (
        a_packed,
        a_s,
        b_packed,
        b_s,
        out,
        ws if ws is not None else out,
        alpha,
        M,
        N,
        K,
        a_packed.stride(0),
        a_s.stride(0),
        b_packed.stride(0),
        b_s.stride(0),
        out.stride(0),
    )
    if cfg["kernel"] == "gemv":
        grid = (M, triton.cdiv(N, cfg["block_n"]), split_k)
        kernel = _gemv_kernel[grid](
            *args,
            BLOCK_M=1, BLOCK_N=cfg["block_n"], BLOCK_K=bk, SPLIT_K=split_k,
            USE_ASM=cfg.get("use_asm", False), MODE=cfg.get("mode", 2),
            num_warps=cfg.get("num_warps", 4), num_stages=cfg.get("num_stages", 1),
        )  # fmt: skip
    else:
        b_planes = bool(cfg.get("b_planes", False))
        a_planes = bool(cfg.get("a_planes", False))
        args = list(args)
        if b_planes:
            args[2] = decode_planes(b_packed, b_scales, use_asm=cfg.get("use_asm", False))
            args[12] = K // 2
        if a_planes:
            args[0] = decode_planes(a_packed, a_scales, use_asm=cfg.get("use_asm", False))
            args[10] = K // 2
        grid = (triton.cdiv(M, cfg["block_m"]) * triton.cdiv(N, cfg["block_n"]), split_k)
        kernel = _gemm_kernel[grid](
            *args,
            BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"], BLOCK_K=bk, SPLIT_K=split_k,
            GROUP_M=cfg.get("group_m", 8), SWAP_AB=cfg.get("swap_ab", False),
            USE_ASM=cfg.get("use_asm", False), B_PLANES=b_planes, A_PLANES=a_planes,
            num_warps=cfg.get("num_warps", 4), num_stages=cfg.get("num_stages", 3),
        )  # fmt: skip
    LAST_KERNEL[0] = kernel
    if split_k > 1:
        block = 1024
        _splitk_reduce_kernel[(triton.cdiv(M * N, block),)](
            ws, out, alpha, M * N, N, out.stride(0), SPLIT_K=split_k, BLOCK=block, num_warps=4
        )
    return out
