"""Tuned launch configurations of the Triton NVFP4 kernels: the candidates of ``candidates`` timed
once per problem size with ``tuning.fastest`` (CUDA-graph replays, median), as triton.autotune
would, and remembered (``tuning.remembered``), so that the timed call does no tuning. A candidate
that fails to compile or launch (out of shared memory, say) is skipped. Without a GPU, or in the
interpreter, the untuned defaults."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from ...numerics import scale_block
from ..tuning import device_key, fastest, remembered, source_hash
from .candidates import QUANT_CANDIDATES, GemmConfig, default_gemm_config, gemm_candidates, m_bucket
from .codec import INTERPRET
from .gemm import nvfp4_gemm
from .quantize import quantize_nvfp4

# Every module of these kernels: an edited kernel or candidate list is tuned again.
_SOURCE = source_hash(*sorted(Path(__file__).parent.glob("*.py")))


def _remembered_fastest(kernel, problem, device, candidates, build, label, log, *, fallback=None):
    """The fastest of `candidates` for `problem` on `device`, tuned once and remembered;
    `fallback` (remembered too) where none runs, if given, else RuntimeError."""

    def choose():
        try:
            best, _, _ = fastest(candidates, build, label=label, log=log)
        except RuntimeError:
            if fallback is None:
                raise
            return fallback
        return best

    key = {**device_key(device), "kernel": kernel, "source": _SOURCE, **problem}
    return remembered(key, choose)


def tuned_gemm_config(a_packed, a_scales, b_packed, b_scales, *, verbose: bool = False,
                      log: Callable[[str], object] = print) -> GemmConfig:  # fmt: skip
    """Best of ``gemm_candidates`` for this (M bucket, N, K, device), timed on the given
    operands."""
    M, N, K = a_packed.shape[0], b_packed.shape[0], a_packed.shape[1] * 2
    dev = a_packed.device
    if dev.type != "cuda" or INTERPRET:
        return default_gemm_config(M, N, K, dev)
    out = torch.empty(M, N, dtype=torch.bfloat16, device=dev)
    alpha = torch.ones(1, dtype=torch.float32, device=dev)  # a host scalar can't be captured
    config = _remembered_fastest(
        "triton_nvfp4_gemm",
        {"M": m_bucket(M), "N": N, "K": K},
        dev,
        gemm_candidates(M, N, K),
        lambda config: partial(
            nvfp4_gemm, a_packed, a_scales, b_packed, b_scales, alpha, out=out, config=config
        ),
        f"M={M} N={N} K={K}",
        log if verbose else None,
    )
    return GemmConfig(config)


def tuned_quant_config(
    x: torch.Tensor,
    had_size: int | None,
    *,
    fmt: str = "nvfp4",
    verbose: bool = False,
    log: Callable[[str], object] = print,
) -> dict:
    """Best of ``QUANT_CANDIDATES`` for (format, had_size, K, M rounded up to a power of two,
    device), as keyword arguments of ``quantize_nvfp4``; where none runs, the kernel's own
    defaults."""
    K = x.shape[-1]
    M = x.numel() // K
    if x.device.type != "cuda" or INTERPRET:
        return {}
    gs = torch.ones(1, dtype=torch.float32, device=x.device)
    candidates = [
        dict(block_elems=be, num_warps=nw, programs_per_sm=ps, num_stages=ns)
        for be, nw, ps, ns in QUANT_CANDIDATES
        if be // (had_size or scale_block(fmt)) >= 16
    ]
    kwargs = _remembered_fastest(
        f"triton_{fmt}_quantize",
        {"had": had_size, "K": K, "M": 1 << max(M - 1, 1).bit_length()},
        x.device,
        candidates,
        lambda kwargs: partial(quantize_nvfp4, x, had_size, gs, fmt=fmt, **kwargs),
        f"quantize {fmt} r={had_size} M={M} K={K}",
        log if verbose else None,
        fallback={},
    )
    return dict(kwargs)
