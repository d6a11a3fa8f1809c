"""The H100 tuning spaces of the Triton NVFP4 kernels: the GEMM's configurations per batch size
(the first of each is the untuned default) and the quantizer's launch parameters."""

from __future__ import annotations

import torch

from .codec import INTERPRET

QUANT_CANDIDATES = [  # (block_elems, num_warps, programs_per_sm, num_stages)
    (2048, 4, 32, 3), (4096, 4, 16, 3), (4096, 8, 16, 3), (8192, 8, 8, 3), (2048, 2, 32, 3),
    (2048, 2, 64, 3), (1024, 1, 64, 3),
]  # fmt: skip


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


def m_bucket(M: int) -> int:
    """The batch sizes that share a tuned configuration: each M up to 64, then powers of two."""
    return M if M <= 64 else _pow2_at_least(M, 128)
