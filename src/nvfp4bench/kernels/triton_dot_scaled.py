"""W4A4 FP4 GEMMs through Triton's ``tl.dot_scaled``: NVFP4 on Blackwell's block-scaled tensor
cores, and MXFP4 wherever Triton compiles it (one kernel, ``_dot_scaled_kernel``).

Compute capability 10.x only: Triton lowers ``tl.dot_scaled`` of two ``e2m1`` operands with
float8_e4m3fn scales (one per 16 values) to the fifth-generation tensor cores' block-scaled MMA
there, as its tutorial ``10-block-scaled-matmul.py`` does for ``nvfp4``. Elsewhere Triton decomposes
the product, which for E4M3 scales it could not do before 2026-03 (triton PR 9772), so the Triton
providers keep their fp16 kernels (``triton_nvfp4``) on other GPUs.

What it computes is ``triton_nvfp4.nvfp4_gemm``'s product, bf16(alpha * a_dq @ b_dq^T) with fp32
accumulation, from the same packed codes and the *swizzled* scales (``numerics.to_blocked``'s
layout, as the quantizer writes them with ``swizzled=True``, padding zeroed). Tiles are 128 rows
of each operand: the MMA's M, and one 128-row block of the scale layout.

This path has not run on a Blackwell GPU yet. ``unsupported_reason`` runs it once on a small
problem against an exact expected result, so a Triton that fails to compile it, or decodes the
scales wrongly, sends the providers back to the fp16 kernels with the reason in the row.

MXFP4 (``mxfp4_gemm``): ``"e2m1"`` operands with uint8 scales, which Triton reads as E8M0, one per
32 values, linear [rows, K/32] (any tile height: on GPUs without FP4 tensor cores small-M tiles
matter). On compute capability 10.x Triton makes it the block-scaled MMA
(``kind::mxf4.block_scale``); on 8.x and 9.x it decomposes it: both operands are decoded to bf16
in registers, then ``mma.sync`` / ``wgmma`` in bf16 (``mma_instructions`` shows which). E2M1 times
a power of two is exact in bf16 unless the scale leaves bf16's range, so the result is the
reference's up to fp32 summation order. Tile sizes are tuned per problem (``tuned_mx_config``).
"""

from __future__ import annotations

import re

import torch
import triton
import triton.language as tl

from .triton_nvfp4 import quantize_nvfp4, swizzled_shape
from .triton_nvfp4.codec import INTERPRET, to_bf16
from .tuning import device_key, fastest, remembered, source_hash

ROWS_PER_SCALE_BLOCK = 128  # rows of one swizzled scale block (and the MMA tile's M)
SCALE_ATOM_BYTES = 512  # one swizzled block: 128 rows x 4 scales (64 values of K)

# BLOCK_K = 256 as Triton's tutorial; smaller where K is not a multiple of it.
CONFIG = {"block_m": 128, "block_n": 128, "block_k": 256, "num_warps": 4, "num_stages": 3}
# MXFP4: BLOCK_M follows M (a decode batch must not pay for 128 rows), BLOCK_N trades occupancy at
# small M against weight reuse at large M.
MX_CANDIDATES = [
    {"block_m": bm, "block_n": bn, "block_k": bk, "num_warps": nw, "num_stages": 3}
    for bm in (16, 32, 64, 128)
    for bn, nw in ((64, 4), (128, 4), (128, 8), (256, 8))
    for bk in (128, 256)
]
_SOURCE = source_hash(__file__)


@triton.jit
def _dot_scaled_kernel(
    a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, alpha_ptr,
    M, N, K, stride_cm,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    VEC: tl.constexpr, SWIZZLED: tl.constexpr,
):  # fmt: skip
    """C[M, N] = alpha * A_dq @ B_dq^T; A, B packed uint8 [rows, K/2]; one scale per VEC values,
    swizzled (SWIZZLED, whole 128-row blocks per tile) or linear [rows, K/VEC]."""
    # M fastest: the tiles that share a weight tile run together (one read from DRAM).
    num_pid_m = tl.cdiv(M, BLOCK_M)
    pid_m = tl.program_id(0) % num_pid_m
    pid_n = tl.program_id(0) // num_pid_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = (offs_m % M).to(tl.int64)  # out-of-range rows re-read valid ones; masked at the store
    rn = (offs_n % N).to(tl.int64)
    offs_kb = tl.arange(0, BLOCK_K // 2)
    a_ptrs = a_ptr + rm[:, None] * (K // 2) + offs_kb[None, :]
    b_ptrs = b_ptr + rn[:, None] * (K // 2) + offs_kb[None, :]

    # Swizzled scales: each 128-row block holds K/(4 VEC) atoms of 512 bytes, one per 4 VEC values
    # of K, so a BLOCK_K step reads BLOCK_K/(4 VEC) consecutive atoms of each 128-row block the
    # tile covers. Linear scales: BLOCK_K/VEC per row.
    ATOMS: tl.constexpr = BLOCK_K // (4 * VEC)
    if SWIZZLED:
        row_block_bytes = (K // (4 * VEC)) * 512
        offs_atoms = tl.arange(0, ATOMS * 512)
        blocks_m = (pid_m * (BLOCK_M // 128) + tl.arange(0, BLOCK_M // 128)) % tl.cdiv(M, 128)
        blocks_n = (pid_n * (BLOCK_N // 128) + tl.arange(0, BLOCK_N // 128)) % tl.cdiv(N, 128)
        as_ptrs = as_ptr + blocks_m.to(tl.int64)[:, None] * row_block_bytes + offs_atoms[None, :]
        bs_ptrs = bs_ptr + blocks_n.to(tl.int64)[:, None] * row_block_bytes + offs_atoms[None, :]
    else:
        offs_s = tl.arange(0, BLOCK_K // VEC)
        as_ptrs = as_ptr + rm[:, None] * (K // VEC) + offs_s[None, :]
        bs_ptrs = bs_ptr + rn[:, None] * (K // VEC) + offs_s[None, :]

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for _ in range(0, K // BLOCK_K):
        a = tl.load(a_ptrs)
        b = tl.load(b_ptrs)
        if SWIZZLED:
            # atom byte (r % 32) * 16 + (r // 32) * 4 + c  ->  scale [row r, column c] of the tile
            sa = tl.load(as_ptrs).reshape(BLOCK_M // 128, ATOMS, 32, 4, 4)
            sa = sa.trans(0, 3, 2, 1, 4).reshape(BLOCK_M, BLOCK_K // VEC)
            sb = tl.load(bs_ptrs).reshape(BLOCK_N // 128, ATOMS, 32, 4, 4)
            sb = sb.trans(0, 3, 2, 1, 4).reshape(BLOCK_N, BLOCK_K // VEC)
            as_ptrs += ATOMS * 512
            bs_ptrs += ATOMS * 512
        else:
            sa = tl.load(as_ptrs)
            sb = tl.load(bs_ptrs)
            as_ptrs += BLOCK_K // VEC
            bs_ptrs += BLOCK_K // VEC
        acc = tl.dot_scaled(a, sa, "e2m1", b.T, sb, "e2m1", acc)
        a_ptrs += BLOCK_K // 2
        b_ptrs += BLOCK_K // 2

    alpha = tl.load(alpha_ptr)
    om = offs_m.to(tl.int64)[:, None]
    on = offs_n.to(tl.int64)[None, :]
    tl.store(c_ptr + om * stride_cm + on, to_bf16(acc * alpha), mask=(om < M) & (on < N))


def quantize_operand(x: torch.Tensor, had_size: int | None, global_scale: torch.Tensor, **config):
    """(packed uint8 [rows, K/2], linear scales [rows, K/16], swizzled scales) of bf16 x [rows, K]
    from the Triton quantizer (``config``: its tuning keywords). The swizzled scales' padding is
    zero: the block-scaled MMA and cuBLAS read it, and the quantizer never writes it."""
    rows, K = x.shape
    packed = torch.empty(rows, K // 2, dtype=torch.uint8, device=x.device)
    linear = torch.empty(rows, K // 16, dtype=torch.float8_e4m3fn, device=x.device)
    blocked = torch.zeros(swizzled_shape(rows, K), dtype=torch.float8_e4m3fn, device=x.device)
    out = (packed, (linear, blocked))
    quantize_nvfp4(x, had_size, global_scale, linear=True, swizzled=True, out=out, **config)
    return packed, linear, blocked


def _block_k(K: int, config: dict = CONFIG) -> int:
    block_k = config["block_k"]
    while K % block_k:
        block_k //= 2
    return block_k


def describe(K: int, config: dict = CONFIG) -> str:
    """The kernel column of a row that ran this GEMM."""
    c = config
    return (
        f"triton dot_scaled bm{c['block_m']} bn{c['block_n']} bk{_block_k(K, c)} "
        f"w{c['num_warps']} s{c['num_stages']}"
    )


def _check_operand(name: str, packed: torch.Tensor, scales: torch.Tensor, mx: bool):
    """(rows, K) of one operand, after checking its codes and scales: swizzled float8_e4m3fn
    (NVFP4) or linear uint8 E8M0 codes (MXFP4)."""
    rows, K = packed.shape[0], packed.shape[1] * 2
    if packed.dtype != torch.uint8 or not packed.is_contiguous():
        raise ValueError(f"{name}: codes must be contiguous uint8 [rows, K/2], got {packed.dtype}")
    if mx:
        expected, dtype, kind = (rows, K // 32), torch.uint8, "linear uint8 E8M0"
    else:
        padded_rows = -(-rows // ROWS_PER_SCALE_BLOCK) * ROWS_PER_SCALE_BLOCK
        expected, dtype, kind = (padded_rows, K // 16), torch.float8_e4m3fn, "swizzled e4m3"
    if scales.dtype != dtype or tuple(scales.shape) != expected or not scales.is_contiguous():
        raise ValueError(
            f"{name}: scales must be the contiguous {kind} {expected}, got {scales.dtype} "
            f"{tuple(scales.shape)}"
        )
    return rows, K


def _gemm(a_packed, a_scales, b_packed, b_scales, alpha, out, config, mx):
    M, K = _check_operand("a", a_packed, a_scales, mx)
    N, Kb = _check_operand("b", b_packed, b_scales, mx)
    if K != Kb or K % 64:
        raise ValueError(f"K must match and be a multiple of 64: a has {K}, b has {Kb}")
    if out is None:
        out = torch.empty(M, N, dtype=torch.bfloat16, device=a_packed.device)
    c = config
    grid = (triton.cdiv(M, c["block_m"]) * triton.cdiv(N, c["block_n"]),)
    _dot_scaled_kernel[grid](
        a_packed, a_scales, b_packed, b_scales, out, alpha.reshape(1).to(torch.float32),
        M, N, K, out.stride(0),
        BLOCK_M=c["block_m"], BLOCK_N=c["block_n"], BLOCK_K=_block_k(K, c),
        VEC=32 if mx else 16, SWIZZLED=not mx,
        num_warps=c["num_warps"], num_stages=c["num_stages"],
    )  # fmt: skip
    return out


def nvfp4_gemm(
    a_packed: torch.Tensor,
    a_blocked: torch.Tensor,
    b_packed: torch.Tensor,
    b_blocked: torch.Tensor,
    alpha: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """bf16 [M, N] = alpha * dequant(a) @ dequant(b)^T from packed codes [rows, K/2] and swizzled
    scales [ceil(rows/128)*128, K/16] (K a multiple of 64). alpha: fp32 tensor of one element."""
    return _gemm(a_packed, a_blocked, b_packed, b_blocked, alpha, out, CONFIG, mx=False)


def mxfp4_gemm(
    a_packed: torch.Tensor,
    a_scales: torch.Tensor,
    b_packed: torch.Tensor,
    b_scales: torch.Tensor,
    alpha: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    config: dict | None = None,
) -> torch.Tensor:
    """bf16 [M, N] = alpha * dequant(a) @ dequant(b)^T from MXFP4 packed codes [rows, K/2] and
    linear E8M0 scale codes uint8 [rows, K/32] (K a multiple of 64; ``numerics.quantize_mxfp4``'s
    layout). `config`: one of ``MX_CANDIDATES`` (default: ``default_mx_config``)."""
    config = config or default_mx_config(a_packed.shape[0])
    return _gemm(a_packed, a_scales, b_packed, b_scales, alpha, out, config, mx=True)


def default_mx_config(M: int) -> dict:
    """The untuned MXFP4 configuration: the smallest tile height that covers M (the interpreter,
    or a first guess)."""
    block_m = next((bm for bm in (16, 32, 64) if M <= bm), 128)
    return {"block_m": block_m, "block_n": 128, "block_k": 128, "num_warps": 4, "num_stages": 3}


def tuned_mx_config(a_packed, a_scales, b_packed, b_scales, *, verbose: bool = False,
                    log=print) -> dict:  # fmt: skip
    """The fastest of ``MX_CANDIDATES`` for (M rounded up to a power of two, N, K) on this GPU,
    timed once on these operands and remembered (``tuning.remembered``). Without a GPU, or in
    the interpreter, ``default_mx_config``."""
    M, N, K = a_packed.shape[0], b_packed.shape[0], a_packed.shape[1] * 2
    dev = a_packed.device
    if dev.type != "cuda" or INTERPRET:
        return default_mx_config(M)
    out = torch.empty(M, N, dtype=torch.bfloat16, device=dev)
    alpha = torch.ones(1, dtype=torch.float32, device=dev)
    # Tiles taller than the next power of two of M only compute padding.
    candidates = [c for c in MX_CANDIDATES if c["block_m"] <= max(16, 1 << (M - 1).bit_length())]

    def choose():
        best, _, _ = fastest(
            candidates,
            lambda c: (
                lambda: mxfp4_gemm(a_packed, a_scales, b_packed, b_scales, alpha, out=out, config=c)
            ),  # fmt: skip
            label=f"mxfp4 dot_scaled M={M} N={N} K={K}",
            log=log if verbose else None,
        )
        return best

    problem = {"M": 1 << max(M - 1, 1).bit_length(), "N": N, "K": K}
    key = {**device_key(dev), "kernel": "triton_mxfp4_dot_scaled", "source": _SOURCE, **problem}
    return dict(remembered(key, choose))


_UNSUPPORTED: dict[str, str | None] = {}


def unsupported_reason(device: torch.device) -> str | None:
    """None where this GEMM runs and is exact on a small problem on `device`, else why not (one
    line). Codes +-1 / +-0.5 with scales 1 and 2 make every product and sum exact in fp32 and bf16,
    so any difference is a wrong decode or layout, not rounding. Checked once per device."""
    key = str(device)
    if key not in _UNSUPPORTED:
        _UNSUPPORTED[key] = _probe(device)
    return _UNSUPPORTED[key]


def _probe(device: torch.device) -> str | None:
    from ..numerics import dequantize_nvfp4, to_blocked

    generator = torch.Generator().manual_seed(0)
    rows, K = 128, 256
    # codes 1 (0.5), 2 (1.0) with random signs; scales 1.0 (0x38) or 2.0 (0x40)
    codes = torch.randint(1, 3, (2, rows, K), generator=generator, dtype=torch.uint8)
    codes |= torch.randint(0, 2, codes.shape, generator=generator, dtype=torch.uint8) << 3
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    scale_bits = torch.tensor([0x38, 0x40], dtype=torch.uint8)
    picks = torch.randint(0, 2, (2, rows, K // 16), generator=generator)
    scales = scale_bits[picks].view(torch.float8_e4m3fn)
    expected = dequantize_nvfp4(packed[0], scales[0]) @ dequantize_nvfp4(packed[1], scales[1]).T
    try:
        out = nvfp4_gemm(
            packed[0].contiguous().to(device),
            to_blocked(scales[0]).to(device),
            packed[1].contiguous().to(device),
            to_blocked(scales[1]).to(device),
            torch.ones(1, device=device),
        )
        wrong = int((out.cpu() != expected.to(torch.bfloat16)).sum())
    except Exception as error:  # a Triton that cannot compile or launch it
        return " ".join(f"tl.dot_scaled NVFP4 GEMM failed: {type(error).__name__}: {error}".split())
    if wrong:
        return f"tl.dot_scaled NVFP4 GEMM wrong on a test problem ({wrong} of {rows * rows} wrong)"
    return None


def mma_instructions(capability: int, fmt: str = "nvfp4") -> set[str]:
    """The tensor-core MMA instructions in the PTX of this GEMM (`fmt` nvfp4 or mxfp4) compiled
    for compute capability `capability` (100 for sm_100). Needs no GPU, and no TRITON_INTERPRET:
    it shows what the installed Triton makes of ``tl.dot_scaled`` there
    (``tcgen05.mma...kind::mxf4nvf4...`` / ``kind::mxf4...`` is the block-scaled FP4 MMA; bf16
    ``wgmma`` / ``mma.sync`` a decomposition)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    mx = fmt == "mxfp4"
    c = default_mx_config(1024) if mx else CONFIG
    constexprs = {"BLOCK_M": c["block_m"], "BLOCK_N": c["block_n"], "BLOCK_K": c["block_k"],
                  "VEC": 32 if mx else 16, "SWIZZLED": not mx}  # fmt: skip
    scale = "*u8" if mx else "*fp8e4nv"
    signature = {"a_ptr": "*u8", "as_ptr": scale, "b_ptr": "*u8", "bs_ptr": scale,
                 "c_ptr": "*bf16", "alpha_ptr": "*fp32", "M": "i32", "N": "i32", "K": "i32",
                 "stride_cm": "i32", **dict.fromkeys(constexprs, "constexpr")}  # fmt: skip
    source = ASTSource(_dot_scaled_kernel, signature, constexprs=constexprs)
    options = {"num_warps": c["num_warps"], "num_stages": c["num_stages"]}
    target = GPUTarget("cuda", capability, 32)
    ptx = triton.compile(source, target=target, options=options).asm["ptx"]
    return set(re.findall(r"\b(?:tcgen05\.mma|wgmma\.mma_async|mma\.sync)\S*", ptx))
