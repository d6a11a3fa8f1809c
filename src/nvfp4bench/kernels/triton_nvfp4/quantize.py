"""The fused rotate + quantize kernel: bf16 x [M, K] to NVFP4 or MXFP4 in one pass.

Each consecutive group of r = had_size elements is rotated by the bf16 Hadamard matrix
(``tl.dot``, fp32 accumulation), then per scale block: amax and the scale, E2M1 codes by RNE
against the scale as stored, packed two per byte (element 2i in the low nibble). NVFP4: per 16
values an E4M3 scale (RNE, saturating; computed with integer bit operations so that the Triton
interpreter rounds exactly like the GPU; ``rounded_scale=True`` of the reference). MXFP4: per 32
values the E8M0 code of the OCP MX rule, read off amax's exponent bits, so that dividing by it is
exact (``numerics.quantize_mxfp4``). Writes linear scales [M, K/block], the swizzled (cuBLAS /
CUTLASS block-scaling) layout, or both.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...numerics import E2M1_EMAX, check_shape, hadamard_matrix, scale_block
from ..tuning import process_cache
from .codec import INTERPRET, e2m1_encode, e4m3_encode, swizzled_offset

EMAX = tl.constexpr(E2M1_EMAX)


@triton.jit
def _quantize_kernel(
    x_ptr, h_ptr, gs_ptr, q_ptr, s_ptr, sw_ptr,
    n_groups, groups_per_row, sw_col_blocks,
    R: tl.constexpr, BLOCK_G: tl.constexpr, ROTATE: tl.constexpr,
    WRITE_LINEAR: tl.constexpr, WRITE_SWIZZLED: tl.constexpr, DOT_F32: tl.constexpr,
    MX: tl.constexpr, SB: tl.constexpr,
):  # fmt: skip
    """x viewed as [n_groups, R] (contiguous rows of R elements): y = x @ H per row, then NVFP4
    (MX false, SB = 16) or MXFP4 (MX true, SB = 32).

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
        y3 = tl.reshape(y, (BLOCK_G, R // SB, SB))
        amax = tl.max(tl.abs(y3), axis=2)
        if MX:
            # floor(log2(amax)) is amax's biased exponent field less 127; the code adds 127 back.
            s_code = tl.maximum(((amax.to(tl.int32, bitcast=True) >> 23) & 0xFF) - EMAX, 0)
            inv = ((254 - s_code) << 23).to(tl.float32, bitcast=True)  # 2**(127 - code), exact
        else:
            sf = tl.math.div_rn(gs * amax, 6.0)
            s_code, s_val = e4m3_encode(sf)
            zero = s_val == 0.0
            inv = tl.math.div_rn(1.0, tl.math.div_rn(tl.where(zero, 1.0, s_val), gs))
            inv = tl.where(zero, 0.0, inv)
        codes = e2m1_encode(y3 * inv[:, :, None])
        lo, hi = tl.split(tl.reshape(codes, (BLOCK_G, R // 2, 2)))
        packed = (lo | (hi << 4)).to(tl.uint8)
        offs_b = tl.arange(0, R // 2)
        tl.store(q_ptr + g64[:, None] * (R // 2) + offs_b[None, :], packed, mask=gmask[:, None])
        offs_s = tl.arange(0, R // SB)
        s_u8 = s_code.to(tl.uint8)
        if WRITE_LINEAR:
            tl.store(s_ptr + g64[:, None] * (R // SB) + offs_s[None, :], s_u8, mask=gmask[:, None])
        if WRITE_SWIZZLED:
            row = (g64 // groups_per_row)[:, None]
            col = (g64 % groups_per_row)[:, None] * (R // SB) + offs_s[None, :]
            off = swizzled_offset(row, col, sw_col_blocks)
            tl.store(sw_ptr + off, s_u8, mask=gmask[:, None])


def _hadamard(had_size: int, device: torch.device) -> torch.Tensor:
    """The reference's bf16 rotation matrix, built once per size and device."""
    cache = process_cache("triton hadamard")
    key = (had_size, str(device))
    if key not in cache:
        cache[key] = hadamard_matrix(had_size, torch.bfloat16).to(device).contiguous()
    return cache[key]


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def swizzled_shape(rows: int, k: int, block: int = 16) -> tuple[int, int]:
    """[ceil(rows/128)*128, ceil(K/block/4)*4]: the padded swizzled scale tensor."""
    return -(-rows // 128) * 128, -(-(k // block) // 4) * 4


def quantize_nvfp4(
    x: torch.Tensor,
    had_size: int | None,
    global_scale: torch.Tensor | float = 1.0,
    *,
    fmt: str = "nvfp4",
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
    ``fmt="mxfp4"``: MXFP4 instead (had_size 32/64/128 or none; `global_scale` unused), scales
    uint8 E8M0 codes [..., K/32], swizzled [ceil(M/128)*128, ceil(K/128)*4].
    """
    if not (linear or swizzled):
        raise ValueError("ask for linear and/or swizzled scales")
    K = x.shape[-1]
    check_shape(K, had_size, swizzle=swizzled, fmt=fmt)
    block = scale_block(fmt)
    scale_dtype = torch.uint8 if fmt == "mxfp4" else torch.float8_e4m3fn
    r = had_size or block  # without rotation, a group is one scale block
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
        s_lin = torch.empty(M, K // block, dtype=scale_dtype, device=dev) if linear else None
        s_sw = (
            torch.empty(swizzled_shape(M, K, block), dtype=scale_dtype, device=dev)
            if swizzled
            else None
        )
    else:
        packed, rest = out[0], out[1]
        s_lin, s_sw = rest if linear and swizzled else ((rest, None) if linear else (None, rest))
    dummy = packed  # the pointer of an output the kernel does not write, or of no rotation
    n_groups = M * K // r
    block_g = max(16, block_elems // r)
    tiles = triton.cdiv(n_groups, block_g)
    grid = (max(1, min(tiles, _num_sms(dev) * programs_per_sm)),)
    _quantize_kernel[grid](
        x_ptr=x2, h_ptr=_hadamard(r, dev) if had_size else dummy, gs_ptr=gs, q_ptr=packed,
        s_ptr=s_lin.view(torch.uint8) if linear else dummy,
        sw_ptr=s_sw.view(torch.uint8) if swizzled else dummy,
        n_groups=n_groups, groups_per_row=K // r,
        sw_col_blocks=swizzled_shape(M, K, block)[1] // 4,
        R=r, BLOCK_G=block_g, ROTATE=bool(had_size),
        WRITE_LINEAR=linear, WRITE_SWIZZLED=swizzled, DOT_F32=INTERPRET,
        MX=fmt == "mxfp4", SB=block,
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    packed = packed.reshape(*lead, K // 2)
    if linear:
        s_lin = s_lin.reshape(*lead, K // block)
    if linear and swizzled:
        return packed, (s_lin, s_sw)
    return packed, (s_lin if linear else s_sw)
