"""Element codecs of the Triton NVFP4 kernels: E2M1 and E4M3 to and from the bits of fp16 and
fp32, bf16 rounding and the output rescale, the scale swizzle. Everything here is
``@triton.jit`` and inlined into the quantize and GEMM kernels.

E2M1 decode: the code's 3 magnitude bits are put at fp16's exponent/mantissa boundary,
``bits = mag << 9 | sign << 15``; as fp16 that reads q * 2**-14 (the E2M1 subnormal 0.5 becomes an
fp16 subnormal, which fp16 arithmetic and the tensor cores keep). E4M3 decode likewise:
``(code << 7)`` as fp16 is s * 2**-8. With ``USE_ASM`` the E2M1 decode is 19 PTX instructions per
4 bytes (8 values) instead of per-element integer code; the interpreter takes the Triton path.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

from ... import numerics

# Triton's CPU interpreter (the tests without a GPU): no PTX, tiny tiles, no tuning.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# The swizzled scale layout's offsets: the reference's own formula, compiled. The interpreter runs
# kernels as Python, where the plain function serves (its jit wrapper there wants triton.language
# among the function's globals, which the reference module does not import).
swizzled_offset = numerics.swizzled_offset if INTERPRET else triton.jit(numerics.swizzled_offset)


def _nibbles_to_f16_ptx(out: int, lanes: str, high: bool) -> str:
    """PTX: the E2M1 codes in the low (high) nibble of the upper byte of each 16-bit lane of
    register `lanes`, as fp16 bits in $`out`: the magnitude to bits 9-11, the sign to bit 15."""
    if high:  # magnitude in bits 12-14, down by 3; the sign is bit 15 already
        magnitude, sign = f"shr.b32 t0, {lanes}, 3;", f"and.b32 t1, {lanes}, 0x80008000;"
    else:  # magnitude in bits 8-10, up by 1; the sign in bit 11, up by 4
        magnitude = f"shl.b32 t0, {lanes}, 1;"
        sign = f"shl.b32 t1, {lanes}, 4;\nand.b32 t1, t1, 0x80008000;"
    return f"{magnitude}\nand.b32 t0, t0, 0x0E000E00;\n{sign}\nor.b32 ${out}, t0, t1;\n"


# 4 bytes (8 codes) in $4; prmt spreads bytes 0,1 (2,3) into the upper byte of each 16-bit lane of
# n01 (n23); then $0, $1 get the low nibbles and $2, $3 the high ones.
_E2M1_TO_F16_PTX = tl.constexpr(
    "{\n.reg .b32 n01, n23, t0, t1, z;\nmov.b32 z, 0;\n"
    "prmt.b32 n01, $4, z, 0x1404;\nprmt.b32 n23, $4, z, 0x3424;\n"
    + "".join(
        _nibbles_to_f16_ptx(out, lanes, high)
        for out, (lanes, high) in enumerate(
            [("n01", False), ("n23", False), ("n01", True), ("n23", True)]
        )
    )
    + "}\n"
)


@triton.jit
def e2m1_to_f16(packed, USE_ASM: tl.constexpr):
    """uint8 [.., n] -> (low nibbles, high nibbles) as fp16 [.., n], value q * 2**-14."""
    if USE_ASM:  # 19 instructions per 4 bytes
        lo, hi = tl.inline_asm_elementwise(
            asm=_E2M1_TO_F16_PTX,
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
def e4m3_to_f16_x128(code):
    """uint8 E4M3 code (non-negative) -> fp16 value s * 2**7 (exact: s <= 448 -> 57344)."""
    c = code.to(tl.int16)
    return ((c << 7) & 0x3F80).to(tl.float16, bitcast=True) * 32768.0


@triton.jit
def dequant_operand(packed, scales, USE_ASM: tl.constexpr):
    """packed uint8 [ROWS, BLOCK_K/16, 8] (8 bytes = one 16-block), scale codes [ROWS, BLOCK_K/16]
    -> (even, odd) elements as fp16 [ROWS, BLOCK_K/16, 8], value q * s * 2**-7 (exact)."""
    lo, hi = e2m1_to_f16(packed, USE_ASM)
    s = e4m3_to_f16_x128(scales)[:, :, None]
    return lo * s, hi * s


@triton.jit
def to_bf16(x):
    """fp32 -> bf16, round to nearest even, done on the bits: the interpreter's cast truncates."""
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return bits.to(tl.float32, bitcast=True).to(tl.bfloat16)


@triton.jit
def e4m3_encode(sf):
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
def e2m1_encode(v):
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


@triton.jit
def rescaled_bf16(acc, alpha_ptr):
    """bf16(alpha * 2**14 * acc): the decoded operands are q * s * 2**-7 each, so a sum of their
    products is 2**-14 times the true one."""
    alpha = tl.load(alpha_ptr) * 16384.0
    return to_bf16(acc * alpha)
