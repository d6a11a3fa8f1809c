"""The W4A4 NVFP4 GEMM in Triton: bf16 [M, N] = alpha * dequant(a) @ dequant(b)^T.

No FP4 math on Hopper: operands are decoded in registers to fp16 (E2M1 x E4M3 products are exact in
fp16, as q * s * 2**-7, no rounding), multiplied on the tensor cores with fp32 accumulation
(``tl.dot``) and rescaled by alpha * 2**14 at the end. Small M has a GEMV kernel (no tensor cores,
fp32 FMAs) and split-K; large M can decode an operand beforehand into fp16 planes. Equal to
bf16(alpha * a_dq @ b_dq^T) computed in float64 up to the order of the fp32 accumulation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .candidates import GemmConfig, default_gemm_config
from .codec import INTERPRET, dequant_operand, e2m1_to_f16, e4m3_to_f16_x128, rescaled_bf16

# The last GEMM launch's compiled kernel (registers, spills, shared memory), for the benchmarks.
LAST_KERNEL: list = [None]


# ------------------------------------------------------------------------------------------------
# tensor-core path
# ------------------------------------------------------------------------------------------------


@triton.jit
def _operand_pointers(ptr, s_ptr, rows, n_rows, stride, s_stride, kb0, ks0,
                      BLOCK_K: tl.constexpr, PLANES: tl.constexpr):  # fmt: skip
    """Pointers to one operand's first K tile on `rows`, to its scales, and the offset of its odd
    plane. Decoded planes (PLANES) are read as fp16 [rows, BLOCK_K/2] (no scales); codes as bytes
    [rows, BLOCK_K/16, 8], so that a 16-block's 8 bytes stay together in one thread's registers,
    with scales [rows, BLOCK_K/16]."""
    offs_ks = tl.arange(0, BLOCK_K // 16)
    if PLANES:
        ptrs = ptr + rows[:, None] * stride + kb0 + tl.arange(0, BLOCK_K // 2)[None, :]
        s_ptrs = s_ptr
        plane = n_rows.to(tl.int64) * stride
    else:
        offs_kb = (offs_ks[:, None] * 8 + tl.arange(0, 8)[None, :])[None, :, :]
        ptrs = ptr + rows[:, None, None] * stride + kb0 + offs_kb
        s_ptrs = s_ptr + rows[:, None] * s_stride + ks0 + offs_ks[None, :]
        plane = 0
    return ptrs, s_ptrs, plane


@triton.jit
def _load_operand(ptrs, s_ptrs, plane, ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
                  PLANES: tl.constexpr, USE_ASM: tl.constexpr):  # fmt: skip
    """(even, odd) elements of one operand's K tile as fp16 [ROWS, BLOCK_K/2], q * s * 2**-7."""
    if PLANES:
        lo = tl.load(ptrs)
        hi = tl.load(ptrs + plane)
    else:
        lo, hi = dequant_operand(tl.load(ptrs), tl.load(s_ptrs), USE_ASM)
        lo = tl.reshape(lo, (ROWS, BLOCK_K // 2))
        hi = tl.reshape(hi, (ROWS, BLOCK_K // 2))
    return lo, hi


@triton.jit
def _gemm_kernel(
    ptrs, sizes, strides, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr, GROUP_M: tl.constexpr, SWAP_AB: tl.constexpr,
    USE_ASM: tl.constexpr, B_PLANES: tl.constexpr, A_PLANES: tl.constexpr,
):  # fmt: skip
    """C[M, N] = alpha * A_dq @ B_dq^T. SWAP_AB computes the transposed tile B_dq @ A_dq^T, so that
    the weight rows fill the MMA's M side when M is small. SPLIT_K > 1 writes fp32 partial sums
    to ws [SPLIT_K, M, N] (reduced by _splitk_reduce_kernel).

    B_PLANES: b_ptr is B already decoded (``_planes_kernel``), fp16 [2, N, K/2] (even elements,
    odd elements; value q * s * 2**-7; stride_bn in elements), loaded straight into shared memory
    by the software pipeline; only A is decoded here. A_PLANES likewise for A (then the loop is a
    plain fp16 GEMM).

    ``ptrs``, ``sizes`` and ``strides`` are the tuples ``nvfp4_gemm`` passes to both kernels
    (Triton specializes each element as it would a separate argument)."""
    a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, ws_ptr, alpha_ptr = ptrs
    M, N, K = sizes
    stride_am, stride_asm, stride_bn, stride_bsn, stride_cm = strides
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
    a_ptrs, as_ptrs, plane_a = _operand_pointers(
        a_ptr, as_ptr, rm, M, stride_am, stride_asm, kb0, ks0, BLOCK_K, A_PLANES
    )
    b_ptrs, bs_ptrs, plane_b = _operand_pointers(
        b_ptr, bs_ptr, rn, N, stride_bn, stride_bsn, kb0, ks0, BLOCK_K, B_PLANES
    )

    if SWAP_AB:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_tiles = K // BLOCK_K
    for _ in range(pid_k, k_tiles, SPLIT_K):
        b_lo, b_hi = _load_operand(b_ptrs, bs_ptrs, plane_b, BLOCK_N, BLOCK_K, B_PLANES, USE_ASM)
        a_lo, a_hi = _load_operand(a_ptrs, as_ptrs, plane_a, BLOCK_M, BLOCK_K, A_PLANES, USE_ASM)
        if SWAP_AB:
            acc = tl.dot(b_lo, tl.trans(a_lo), acc)
            acc = tl.dot(b_hi, tl.trans(a_hi), acc)
        else:
            acc = tl.dot(a_lo, tl.trans(b_lo), acc)
            acc = tl.dot(a_hi, tl.trans(b_hi), acc)
        a_ptrs += SPLIT_K * (BLOCK_K // 2)
        b_ptrs += SPLIT_K * (BLOCK_K // 2)
        if not A_PLANES:
            as_ptrs += SPLIT_K * (BLOCK_K // 16)
        if not B_PLANES:
            bs_ptrs += SPLIT_K * (BLOCK_K // 16)

    if SWAP_AB:
        acc = tl.trans(acc)
    om = offs_m.to(tl.int64)[:, None]
    on = offs_n.to(tl.int64)[None, :]
    mask = (om < M) & (on < N)
    if SPLIT_K == 1:
        tl.store(c_ptr + om * stride_cm + on, rescaled_bf16(acc, alpha_ptr), mask=mask)
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
    lo, hi = e2m1_to_f16(packed, USE_ASM)
    s = e4m3_to_f16_x128(sc)[:, None]
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
    row = offs // N
    col = offs % N
    tl.store(c_ptr + row * stride_cm + col, rescaled_bf16(acc, alpha_ptr), mask=mask)


# ------------------------------------------------------------------------------------------------
# GEMV path for tiny M (CUDA cores, no tensor cores)
# ------------------------------------------------------------------------------------------------


@triton.jit
def _add_f16(x, y):
    return x + y


@triton.jit
def _gemv_kernel(
    ptrs, sizes, strides, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
    USE_ASM: tl.constexpr, MODE: tl.constexpr,
):  # fmt: skip
    """One activation row (program_id 0, fastest: the rows sharing a weight tile run together and
    the weight is read from DRAM once) against BLOCK_N weight rows on the CUDA cores.

    MODE 0: elementwise fp32 accumulation acc[n, blk, j] += q_b * (s_b * a_dq), one reduction at
    the end. MODE 1: fp32 sum over each 16-block, then times s_b. MODE 2: E2M1 x E2M1 products and
    their sums over each half block (8 values) in fp16 - exact: |sum| <= 8 * 18 in steps of 1/8 -
    then fp32 times s_a * s_b."""
    a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, ws_ptr, alpha_ptr = ptrs
    M, N, K = sizes
    stride_am, stride_asm, stride_bn, stride_bsn, stride_cm = strides
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
        a_lo, a_hi = e2m1_to_f16(a, USE_ASM)
        b_lo, b_hi = e2m1_to_f16(b, USE_ASM)
        s_a = e4m3_to_f16_x128(sa).to(tl.float32)
        s_b = e4m3_to_f16_x128(sb).to(tl.float32)
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
        tl.store(c_ptr + m * stride_cm + on, rescaled_bf16(out, alpha_ptr), mask=mask)
    else:
        tl.store(ws_ptr + (pid_k * M + m) * N + on, out, mask=mask)


# ------------------------------------------------------------------------------------------------
# launch
# ------------------------------------------------------------------------------------------------


def _check_operand(name, packed, scales):
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
        p_ptr=packed, s_ptr=scales.view(torch.uint8), out_ptr=out, n_blocks=n_blocks,
        plane=R * K // 2, BLOCK=block, USE_ASM=use_asm and not INTERPRET, num_warps=4,
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
    config: dict | None = None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:
    """bf16 [M, N] = alpha * (a_q * a_s) @ (b_q * b_s)^T, fp32 accumulation.

    a_packed uint8 [M, K/2], a_scales e4m3 linear [M, K/16] (row-major, as quantize_nvfp4 and
    numerics.quantize_nvfp4 return them), b likewise [N, ...]; alpha: float or fp32 tensor of one
    element (= 1 / (gs_a * gs_b) for globally scaled operands). K: a multiple of 32 (block_k is
    halved until it divides K). `config`: a GemmConfig / dict (``tuned_gemm_config`` times the
    candidates), or None for ``default_gemm_config``.
    """
    M, K = _check_operand("a", a_packed, a_scales)
    N, Kb = _check_operand("b", b_packed, b_scales)
    if K != Kb:
        raise ValueError(f"K mismatch: a has {K}, b has {Kb}")
    dev = a_packed.device
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
    use_asm = cfg.get("use_asm", False)
    gemv = cfg["kernel"] == "gemv"
    b_planes = not gemv and bool(cfg.get("b_planes", False))
    a_planes = not gemv and bool(cfg.get("a_planes", False))
    # An operand decoded beforehand is read as fp16 planes, K/2 elements per row.
    a_op, stride_am = a_packed, a_packed.stride(0)
    b_op, stride_bn = b_packed, b_packed.stride(0)
    if a_planes:
        a_op, stride_am = decode_planes(a_packed, a_scales, use_asm=use_asm), K // 2
    if b_planes:
        b_op, stride_bn = decode_planes(b_packed, b_scales, use_asm=use_asm), K // 2
    operands = dict(
        ptrs=(a_op, a_s, b_op, b_s, out, ws if ws is not None else out, alpha),
        sizes=(M, N, K),
        strides=(stride_am, a_s.stride(0), stride_bn, b_s.stride(0), out.stride(0)),
        BLOCK_N=cfg["block_n"], BLOCK_K=bk, SPLIT_K=split_k, USE_ASM=use_asm,
        num_warps=cfg.get("num_warps", 4),
    )  # fmt: skip
    if gemv:
        grid = (M, triton.cdiv(N, cfg["block_n"]), split_k)
        kernel = _gemv_kernel[grid](
            **operands, MODE=cfg.get("mode", 2), num_stages=cfg.get("num_stages", 1)
        )
    else:
        grid = (triton.cdiv(M, cfg["block_m"]) * triton.cdiv(N, cfg["block_n"]), split_k)
        kernel = _gemm_kernel[grid](
            **operands, BLOCK_M=cfg["block_m"], GROUP_M=cfg.get("group_m", 8),
            SWAP_AB=cfg.get("swap_ab", False), B_PLANES=b_planes, A_PLANES=a_planes,
            num_stages=cfg.get("num_stages", 3),
        )  # fmt: skip
    LAST_KERNEL[0] = kernel
    if split_k > 1:
        block = 1024
        _splitk_reduce_kernel[(triton.cdiv(M * N, block),)](
            ws_ptr=ws,
            c_ptr=out,
            alpha_ptr=alpha,
            MN=M * N,
            N=N,
            stride_cm=out.stride(0),
            SPLIT_K=split_k,
            BLOCK=block,
            num_warps=4,
        )
    return out
