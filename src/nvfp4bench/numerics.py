"""Reference NVFP4 and MXFP4 with Hadamard rotation: E2M1 values with an E4M3 scale per 16 and an
fp32 global scale (NVFP4), or with an E8M0 (power-of-two) scale per 32 (MXFP4).

Pure torch, device-agnostic, vectorised (no Python loops over blocks). What it computes is
docs/nvfp4-spec.md ("fusedQuantizeNv"), in brief, for each row and each 16-block along K:

    y     = rotate(x, r)                      # bf16 operands, fp32 accumulation, block-diagonal
    amax  = max |y|                           # no epsilon
    SF    = gs * amax / 6                     # fp32
    s     = e4m3(min(SF, 448))                # RNE, saturating (the stored scale)
    S     = s (rounded_scale=True, canonical) or SF (rounded_scale=False, qutlass 830d2c4)
    inv   = 1 / (S / gs), 0 when S == 0       # fp32
    q     = e2m1(y * inv)                     # RNE, saturating at +-6
    x_hat = q * s / gs                        # dequantize_nvfp4

Codes: magnitude index 0..7 for {0, .5, 1, 1.5, 2, 3, 4, 6}, sign in bit 3 taken from the sign
bit of y * inv (as PTX ``cvt.rn.satfinite.e2m1x2.f32`` does: a negative value that rounds to zero
gives code 0x8, i.e. -0). Element 2i goes in the low nibble of byte i, element 2i+1 in the high one.

MXFP4 (OCP Microscaling Formats v1.0; docs/nvfp4-spec.md, "MXFP4"), per 32-block along K:

    e     = clamp(floor(log2(amax)) - 2, -127, 127)   # 2 = emax of E2M1 (6 = 1.5 * 2**2)
    X     = 2**e, stored as the E8M0 code e + 127 (uint8); amax == 0 gives code 0
    q     = e2m1(y / X)                       # exact division by a power of two; RNE, saturating
    x_hat = q * X                             # dequantize_mxfp4
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "BLOCK",
    "FORMATS",
    "MX_BLOCK",
    "MX_HAD_SIZES",
    "E2M1_EMAX",
    "E4M3_MAX",
    "E2M1_MAX",
    "HAD_SIZES",
    "hadamard_matrix",
    "rotate",
    "quantize_nvfp4",
    "dequantize_nvfp4",
    "quantize_mxfp4",
    "dequantize_mxfp4",
    "fake_quantize",
    "scale_block",
    "to_blocked",
    "from_blocked",
    "swizzled_offset",
    "check_shape",
    "relative_error",
]

BLOCK = 16  # values per E4M3 scale
E4M3_MAX = 448.0
E2M1_MAX = 6.0
HAD_SIZES = (16, 32, 64, 128)  # rotation sizes the kernels support
FORMATS = ("nvfp4", "mxfp4")  # the 4-bit formats, the default first
MX_BLOCK = 32  # values per E8M0 scale
# A rotation of 16 would mix half a scale group: qutlass's MXFP4 quantizer and vLLM's MXFP4
# benchmark offer none, so neither do we.
MX_HAD_SIZES = (32, 64, 128)
E2M1_EMAX = 2  # exponent of E2M1's largest value, 6 = 1.5 * 2**2

# E2M1 rounding boundaries (midpoints between neighbouring grid values) and, per boundary, whether
# a value exactly on it goes up. Round-to-nearest-even: the tie goes to the neighbour whose mantissa
# bit is 0, i.e. to the even code index: 0.25 -> 0 (idx 0), 0.75 -> 1 (idx 2), 1.25 -> 1 (idx 2),
# 1.75 -> 2 (idx 4), 2.5 -> 2 (idx 4), 3.5 -> 4 (idx 6), 5 -> 4 (idx 6). Anything above 5 saturates
# to 6 (idx 7), including inf.
_E2M1_BOUNDS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True), (2.5, False),
                (3.5, True), (5.0, False))  # fmt: skip


def hadamard_matrix(had_size: int, dtype=torch.bfloat16, device=None) -> torch.Tensor:
    """The benchmark's rotation: Sylvester Hadamard (entries +-1, in `dtype`) times had_size**-0.5.

    Exactly ``deterministic_hadamard_matrix(r, dtype, device) * r**-0.5`` as vLLM's bench builds it:
    the product is computed by torch in fp32 and rounded once to `dtype`, so in bf16 the entries are
    +-bf16(r**-0.5), which is exact for r = 16, 64 and not for 32, 128 (H @ H.T ~ 0.99978 I there).
    Symmetric.
    """
    # Imported here: compressed-tensors imports transformers (about 4 s), and every Snakemake
    # start-up (it reads FORMATS and BLOCK) imports this module.
    from compressed_tensors.transform.utils.hadamard import deterministic_hadamard_matrix

    kwargs = {} if device is None else {"device": device}
    return deterministic_hadamard_matrix(had_size, dtype, **kwargs) * had_size**-0.5


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is unknown; use one of {', '.join(FORMATS)}")


def _check_had_size(had_size, fmt: str = "nvfp4") -> None:
    if had_size in (None, 0):
        return
    if isinstance(had_size, bool) or not isinstance(had_size, int) or had_size not in HAD_SIZES:
        raise ValueError(
            f"had_size={had_size!r} is not supported: use None/0 (no rotation) or one of "
            f"{', '.join(map(str, HAD_SIZES))}"
        )
    if fmt == "mxfp4" and had_size not in MX_HAD_SIZES:
        raise ValueError(
            f"had_size={had_size} is not an MXFP4 rotation: use None/0 or one of "
            f"{', '.join(map(str, MX_HAD_SIZES))} (a rotation must cover whole 32-value groups)"
        )


def scale_block(fmt: str) -> int:
    """Values per scale: 16 (NVFP4) or 32 (MXFP4)."""
    _check_format(fmt)
    return MX_BLOCK if fmt == "mxfp4" else BLOCK


def check_shape(K: int, had_size: int | None, *, swizzle: bool = False, fmt: str = "nvfp4") -> None:
    """Raise a one-line ValueError naming the bad value when K / had_size can't be quantized.

    K must be a positive multiple of the scale block (16 for NVFP4, 32 for MXFP4), of had_size
    (rotation groups must not cross rows) and, with `swizzle`, of 4 blocks (the swizzled scale
    layout holds 4 scales per row chunk). MXFP4 takes had sizes 32, 64 and 128 only.
    """
    block = scale_block(fmt)
    _check_had_size(had_size, fmt)
    if isinstance(K, bool) or not isinstance(K, int) or K <= 0:
        raise ValueError(f"K={K!r} must be a positive integer")
    if K % block:
        kind = "E8M0" if fmt == "mxfp4" else "E4M3"
        raise ValueError(
            f"K={K} is not a multiple of {block} (one {kind} scale per {block} values)"
        )
    if had_size and K % had_size:
        raise ValueError(
            f"K={K} is not a multiple of had_size={had_size} (rotation groups would cross rows)"
        )
    if swizzle and K % (4 * block):
        raise ValueError(
            f"K={K} is not a multiple of {4 * block} (the swizzled scale layout needs "
            f"K/{block} % 4 == 0)"
        )


def rotate(x: torch.Tensor, had_size: int | None) -> torch.Tensor:
    """Block-diagonal Hadamard rotation along the last dim, float32 result.

    Each consecutive group of `had_size` elements is multiplied on the right by H
    (``hadamard_matrix``): ``y_group = x_group @ H``, with bf16 operands (x is cast to bf16) and
    fp32 accumulation. The product of two bf16 numbers is exact in fp32, so an fp32 matmul of the
    bf16 values is that; only the summation order can differ from a kernel's. (On CUDA, TF32 matmul
    would not change this: bf16 values are exact in TF32.) None/0: ``x.float()``.
    """
    if not had_size:
        return x.float()
    _check_had_size(had_size)
    K = x.shape[-1]
    if K % had_size:
        raise ValueError(
            f"K={K} is not a multiple of had_size={had_size} (rotation groups would cross rows)"
        )
    H = hadamard_matrix(had_size, torch.bfloat16, x.device).float()
    xb = x.to(torch.bfloat16).float()
    return (xb.reshape(-1, had_size) @ H).reshape(x.shape)


def _as_global_scale(global_scale, device) -> torch.Tensor:
    gs = torch.as_tensor(global_scale, dtype=torch.float32, device=device)
    if gs.numel() != 1:
        raise ValueError(f"global_scale must be a scalar or one-element tensor, got {gs.shape}")
    return gs.reshape(())


def _e4m3(v: torch.Tensor) -> torch.Tensor:
    """fp32 -> float8_e4m3fn, RNE, saturating at 448.

    torch's cast is RNE (subnormals included: 2**-10 -> 0, 3 * 2**-10 -> 2**-8). Torch 2.13 on CPU
    also saturates out-of-range values to 448, but older versions / other backends gave NaN (e4m3fn
    has no inf), so clamp first; clamping is exact and cannot change an in-range result."""
    return v.clamp(min=-E4M3_MAX, max=E4M3_MAX).to(torch.float8_e4m3fn)


def _e2m1_codes(v: torch.Tensor) -> torch.Tensor:
    """fp32 -> E2M1 code (uint8 0..15), RNE, saturating at +-6, sign bit from v's sign bit.

    compressed-tensors' ``cast_to_fp4`` rounds the same way (RNE) but returns grid values, and its
    ``pack_fp4_to_uint8`` re-derives the code from them with a masked write per code; counting the
    boundaries gives the code in one pass instead, so packing is done here directly.
    """
    a = v.abs()
    idx = torch.zeros(v.shape, dtype=torch.uint8, device=v.device)
    for bound, tie_up in _E2M1_BOUNDS:  # 7 elementwise passes, not a loop over blocks
        idx += (a >= bound) if tie_up else (a > bound)
    return idx | (torch.signbit(v).to(torch.uint8) << 3)


def _pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    pairs = codes.reshape(*codes.shape[:-1], codes.shape[-1] // 2, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def quantize_nvfp4(
    x: torch.Tensor,
    had_size: int | None = None,
    global_scale=1.0,
    *,
    rounded_scale: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate and quantize `x` (any float dtype, K last) to NVFP4.

    Returns ``(packed uint8 [..., K/2], scales float8_e4m3fn [..., K/16])``: scales linear, not
    padded or swizzled (see ``to_blocked``). `global_scale`: float or one-element tensor.
    `rounded_scale=True` (canonical) divides by the stored e4m3 scale; False by the unrounded SF, as
    the qutlass version vLLM pins does (the stored scale is the same e4m3 value either way).
    """
    check_shape(x.shape[-1], had_size)
    y = rotate(x, had_size)
    lead, K = y.shape[:-1], y.shape[-1]
    yb = y.reshape(*lead, K // BLOCK, BLOCK)
    gs = _as_global_scale(global_scale, y.device)

    amax = yb.abs().amax(dim=-1)
    sf = gs * amax / 6.0
    scales = _e4m3(sf)
    S = scales.float() if rounded_scale else sf
    inv = torch.where(S == 0, torch.zeros_like(S), 1.0 / (S / gs))
    codes = _e2m1_codes(yb * inv.unsqueeze(-1)).reshape(*lead, K)
    return _pack_nibbles(codes), scales


def dequantize_nvfp4(packed: torch.Tensor, scales: torch.Tensor, global_scale=1.0) -> torch.Tensor:
    """``q * s / gs``, float32 [..., K], from packed codes [..., K/2] and linear scales [..., K/16].

    Unpacking uses compressed-tensors' ``unpack_fp4_from_uint8``: low nibble first, sign bit 3,
    magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6} - the spec's order.
    """
    q = _unpack_codes(packed, scales, BLOCK)
    gs = _as_global_scale(global_scale, packed.device)
    s = scales.float().reshape(q.shape[0], -1, 1)
    return (q * s / gs).reshape(scales.shape[:-1] + (packed.shape[-1] * 2,))


def _e8m0_codes(amax: torch.Tensor) -> torch.Tensor:
    """The OCP MX shared exponent of blocks with this amax (fp32 >= 0), as E8M0 codes (uint8):
    floor(log2(amax)) - 2 + 127, clamped to 0..254; frexp gives floor(log2) exactly, subnormals
    included. amax == 0 gives code 0 (its codes are 0 whatever the scale)."""
    _, exponent = torch.frexp(amax)  # amax = m * 2**exponent, m in [0.5, 1)
    code = (exponent - 1 - E2M1_EMAX + 127).clamp(0, 254)
    return torch.where(amax == 0, torch.zeros_like(code), code).to(torch.uint8)


def _e8m0_values(codes: torch.Tensor) -> torch.Tensor:
    """2**(code - 127) as float32 (2**-127 is an fp32 subnormal, exact)."""
    return torch.ldexp(torch.ones(codes.shape, device=codes.device), codes.int() - 127)


def quantize_mxfp4(
    x: torch.Tensor, had_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate (had_size None/0, 32, 64 or 128) and quantize `x` (any float dtype, K last) to MXFP4.

    Returns ``(packed uint8 [..., K/2], E8M0 scale codes uint8 [..., K/32])``: the scale of a code
    c is 2**(c - 127) (``float8_e8m0fnu``'s bits, and what ``tl.dot_scaled`` takes for
    ``"e2m1"`` with uint8 scales), linear, not padded or swizzled. Codes are packed as NVFP4's.
    """
    check_shape(x.shape[-1], had_size, fmt="mxfp4")
    y = rotate(x, had_size)
    lead, K = y.shape[:-1], y.shape[-1]
    yb = y.reshape(*lead, K // MX_BLOCK, MX_BLOCK)
    scales = _e8m0_codes(yb.abs().amax(dim=-1))
    # Dividing by a power of two is exact: the codes are those of y's own bits.
    codes = _e2m1_codes(yb / _e8m0_values(scales).unsqueeze(-1)).reshape(*lead, K)
    return _pack_nibbles(codes), scales


def _unpack_codes(packed: torch.Tensor, scales: torch.Tensor, block: int) -> torch.Tensor:
    """E2M1 values float32 [rows, K/block, block] of packed codes [..., K/2], after checking that
    `scales` [..., K/block] fits them."""
    lead, K = packed.shape[:-1], packed.shape[-1] * 2
    if scales.shape[:-1] != lead or scales.shape[-1] * block != K:
        raise ValueError(
            f"scales shape {tuple(scales.shape)} does not match packed shape {tuple(packed.shape)} "
            f"(expected {(*lead, K // block)})"
        )
    from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8  # as above

    rows = math.prod(lead)
    q = unpack_fp4_from_uint8(packed.reshape(rows, K // 2), rows, K, dtype=torch.float32)
    return q.reshape(rows, K // block, block)


def dequantize_mxfp4(packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``q * 2**(c - 127)``, float32 [..., K], from packed codes [..., K/2] and E8M0 scale codes
    [..., K/32] (uint8 or float8_e8m0fnu)."""
    q = _unpack_codes(packed, scales, MX_BLOCK)
    s = _e8m0_values(scales.view(torch.uint8).reshape(q.shape[0], -1, 1))
    return (q * s).reshape(scales.shape[:-1] + (packed.shape[-1] * 2,))


def fake_quantize(x: torch.Tensor, had_size: int | None, fmt: str) -> torch.Tensor:
    """The rotated `x` quantized to `fmt` and dequantized again (float32): what the W4A4 GEMM
    multiplies. NVFP4 with global scale 1, as vLLM's benchmark."""
    _check_format(fmt)
    if fmt == "mxfp4":
        return dequantize_mxfp4(*quantize_mxfp4(x, had_size or None))
    return dequantize_nvfp4(*quantize_nvfp4(x, had_size or None, 1.0))


def _blocked_dims(rows: int, cols: int) -> tuple[int, int]:
    return -(-rows // 128), -(-cols // 4)


def swizzled_offset(row, col, col_blocks):
    """The flat offset of scale (row, col) in the cuBLAS / CUTLASS block-scaling layout, whose
    padded [ceil(rows/128)*128, 4*col_blocks] tensor holds 128 x 4 tiles of 512 scales, each
    stored as 32 rows x (4 row groups x 4 columns).

    Plain arithmetic on non-negative values, so that ints, torch tensors and Triton tensors (the
    Triton quantizer compiles this very function) all compute it."""
    tile = (row // 128) * col_blocks + col // 4
    return tile * 512 + (row % 32) * 16 + ((row % 128) // 32) * 4 + col % 4


def to_blocked(scales: torch.Tensor) -> torch.Tensor:
    """Swizzle 2-D scales [rows, cols] into the cuBLAS / CUTLASS block-scaling layout.

    Returns a 2-D tensor [ceil(rows/128)*128, ceil(cols/4)*4] of the same dtype whose flat
    (row-major) order is the swizzled order, zero-padded: scale (row, col) lands at
    ``swizzled_offset(row, col, ceil(cols/4))``. Built by reshaping (as vLLM's ``to_blocked``),
    not from that formula, so each checks the other.
    """
    if scales.dim() != 2:
        raise ValueError(f"to_blocked needs a 2-D [rows, cols] tensor, got {scales.dim()}-D")
    rows, cols = scales.shape
    rb, cb = _blocked_dims(rows, cols)
    # float8 has few kernels on some backends: shuffle the bytes instead (same element size).
    as_bytes = scales.element_size() == 1 and scales.dtype != torch.uint8
    raw = scales.view(torch.uint8) if as_bytes else scales
    padded = raw.new_zeros(rb * 128, cb * 4)
    padded[:rows, :cols] = raw
    # row = rb*128 + (r//32)*32 + r%32, col = cb*4 + c  ->  order (rb, cb, r%32, r//32, c)
    out = padded.view(rb, 4, 32, cb, 4).permute(0, 3, 2, 1, 4).reshape(rb * 128, cb * 4)
    return out.view(scales.dtype) if as_bytes else out


def from_blocked(blocked: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of ``to_blocked``: [rows, cols] scales from a swizzled tensor (any shape with the
    padded number of elements), padding dropped."""
    rb, cb = _blocked_dims(rows, cols)
    if blocked.numel() != rb * cb * 512:
        raise ValueError(
            f"blocked has {blocked.numel()} elements; rows={rows}, cols={cols} need {rb * cb * 512}"
        )
    as_bytes = blocked.element_size() == 1 and blocked.dtype != torch.uint8
    raw = blocked.view(torch.uint8) if as_bytes else blocked
    out = raw.reshape(rb, cb, 32, 4, 4).permute(0, 3, 2, 1, 4).reshape(rb * 128, cb * 4)
    out = out[:rows, :cols].contiguous()
    return out.view(blocked.dtype) if as_bytes else out


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref||_F / ||ref||_F`` in float64 (0 when both are zero, inf when only ref is)."""
    o, r = out.double(), ref.double()
    num = torch.linalg.vector_norm(o - r).item()
    den = torch.linalg.vector_norm(r).item()
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den
