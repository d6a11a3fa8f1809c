"""Error of W4A4 NVFP4 and MXFP4 products per Hadamard size and activation distribution
(CPU-friendly).

For one GEMM shape (N, K) and each had size in {0 (no rotation), *had_sizes} and each activation
distribution: a synthetic bf16 weight W [n, K] (n = min(N, max_out_channels) sampled output
channels: W is random anyway, N only sets how many) and activations X [tokens, K] are both rotated
with the same block-diagonal Hadamard and quantized with the reference quantizer of the format
(``quantize_nvfp4`` with global scale 1.0, like vLLM's bench, or ``quantize_mxfp4``), dequantized,
and multiplied in float64. The errors are
against the float64 product of the unquantized bf16 operands. See ``accuracy_table``.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from .numerics import check_shape, fake_quantize, hadamard_matrix

__all__ = [
    "DISTRIBUTIONS",
    "COLUMNS",
    "make_activations",
    "make_operands",
    "accuracy_table",
]

DISTRIBUTIONS = ("gaussian", "outliers")

COLUMNS = [
    "N",
    "K",
    "format",
    "distribution",
    "had_size",
    "status",
    "reason",
    "tokens",
    "out_channels",
    "seed",
    "err_output",
    "err_activation",
    "err_weight",
]

# The "outliers" recipe (see make_activations).
OUTLIER_DF = 4  # Student-t degrees of freedom: heavy tails, finite variance; 3 made the errors
# jump between seeds (a few extreme entries dominate the Frobenius norms), 4 is stable to ~2%
OUTLIER_CHANNEL_FRACTION = 0.01
OUTLIER_CHANNEL_GAIN = 50.0


def make_activations(
    distribution: str, tokens: int, K: int, generator: torch.Generator
) -> torch.Tensor:
    """Synthetic activations [tokens, K], bf16, on the generator's device (CPU by default).

    - ``gaussian``: i.i.d. standard normal.
    - ``outliers``: LLM-like. Every entry is Student-t with 4 degrees of freedom (heavy tails;
      z / sqrt(chi2_4 / 4), the chi-square drawn as a sum of 4 squared normals so that it uses the
      generator), and a fixed set of max(1, round(1% of K)) channels, drawn once per call with the
      generator and the same for every token, is multiplied by 50: the massive channel-wise
      outliers of LLM activations that Hadamard rotation is meant to spread out.
    Deterministic for a given generator state.
    """
    g = generator
    dev = g.device
    if distribution == "gaussian":
        x = torch.randn(tokens, K, generator=g, device=dev)
    elif distribution == "outliers":
        z = torch.randn(tokens, K, generator=g, device=dev)
        chi2 = torch.randn(OUTLIER_DF, tokens, K, generator=g, device=dev).square().sum(0)
        x = z / torch.sqrt(chi2 / OUTLIER_DF)
        n_out = max(1, round(OUTLIER_CHANNEL_FRACTION * K))
        channels = torch.randperm(K, generator=g, device=dev)[:n_out]
        x[:, channels] *= OUTLIER_CHANNEL_GAIN
    else:
        raise ValueError(
            f"distribution={distribution!r} is unknown; use one of {', '.join(DISTRIBUTIONS)}"
        )
    return x.to(torch.bfloat16)


def make_operands(
    N: int,
    K: int,
    distribution: str,
    *,
    tokens: int = 256,
    max_out_channels: int = 512,
    seed: int = 0,
    device="cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (X [tokens, K], W [min(N, max_out_channels), K]) bf16 pair ``accuracy_table`` uses.

    W = randn from a generator seeded with `seed` (the same W for every distribution); X from
    ``make_activations`` with a generator seeded with seed*1000 + 1 + the distribution's index in
    DISTRIBUTIONS, so a row does not depend on which other rows are asked for.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"distribution={distribution!r} is unknown; use one of {', '.join(DISTRIBUTIONS)}"
        )
    dev = torch.device(device)
    gw = torch.Generator(device=dev).manual_seed(seed)
    W = torch.randn(min(N, max_out_channels), K, generator=gw, device=dev).to(torch.bfloat16)
    gx = torch.Generator(device=dev).manual_seed(
        seed * 1000 + 1 + DISTRIBUTIONS.index(distribution)
    )
    return make_activations(distribution, tokens, K, gx), W


def _unrotate(xq: torch.Tensor, had_size: int) -> torch.Tensor:
    """Map dequantized rotated values back to the original basis, float64.

    The bench's bf16 H satisfies H Hᵀ = c·I exactly (Sylvester matrix times one constant), with
    c = 1 for had sizes 16, 64 and c = bf16(r^-0.5)^2 * r ~ 0.99978 for 32, 128. Its inverse is
    therefore Hᵀ / c, i.e. Hᵀ itself for 16/64; dividing by c keeps the 2e-4 scale of H out of the
    per-operand errors (it is not quantization error; it does show, as it should, in err_output).
    """
    if not had_size:
        return xq.double()
    H = hadamard_matrix(had_size, torch.bfloat16, xq.device).double()
    c = float((H[0] @ H[0]).item())
    shape = xq.shape
    return (xq.double().reshape(-1, had_size) @ (H.T / c)).reshape(shape)


def _rel(err: torch.Tensor, ref_norm: float) -> float:
    return float(torch.linalg.vector_norm(err).item()) / ref_norm


def accuracy_table(
    N: int,
    K: int,
    had_sizes: list[int],
    *,
    fmt: str = "nvfp4",
    distributions=DISTRIBUTIONS,
    tokens: int = 256,
    max_out_channels: int = 512,
    seed: int = 0,
    device="cpu",
) -> pd.DataFrame:
    """One row per (distribution, had size in {0, *had_sizes}) of format `fmt`; columns
    ``COLUMNS``.

    - X, W from ``make_operands``: W = bf16 randn [min(N, max_out_channels), K], one for the whole
      table; X [tokens, K] from ``make_activations``; all seeded from `seed`.
    - Y = X·Wᵀ in float64 from the unquantized bf16 operands: the unrotated product, which is what a
      user of the layer gets. Both operands are rotated with the same H and quantized; the float64
      product of the dequantized rotated operands Y_q = (XH)^(WH)^ᵀ ≈ X H Hᵀ Wᵀ is compared with Y
      directly: H Hᵀ = I up to the ~2e-4 bf16 scale of H for 32/128 (see ``_unrotate``), and that
      scale is part of what the rotated kernels compute, so it counts.
    - err_output = ‖Y_q − Y‖ / ‖Y‖ (Frobenius).
    - err_activation = ‖X̂ − X‖ / ‖X‖ with X̂ = dequantized rotated X mapped back by H⁻¹ (= Hᵀ up
      to that scale): the quantization error of X in its own basis, comparable across had sizes
      (with no rotation the two bases coincide); err_weight likewise for W.
    - A had size that ``check_shape`` rejects (does not divide K, not in 16..128, 16 for MXFP4)
      gets a row with status 'skipped', the one-line reason, and NaN errors; the others have
      status 'ok'.
    Deterministic: the same arguments give an identical table.
    """
    kw = dict(tokens=tokens, max_out_channels=max_out_channels, seed=seed, device=device)
    operands = {dist: make_operands(N, K, dist, **kw) for dist in distributions}  # checks names
    if not operands:
        raise ValueError("distributions is empty")
    W = next(iter(operands.values()))[1]
    n = W.shape[0]
    sizes = list(dict.fromkeys([0, *(int(h) for h in had_sizes)]))

    ok_sizes, reasons = [], {}
    for h in sizes:
        try:
            check_shape(K, h or None, fmt=fmt)
            ok_sizes.append(h)
        except ValueError as e:
            reasons[h] = str(e)

    W64 = W.double()
    w_norm = float(torch.linalg.vector_norm(W64).item())
    w_deq, err_w = {}, {}
    for h in ok_sizes:  # the weight is quantized once per had size, shared by the distributions
        wd = fake_quantize(W, h, fmt)
        w_deq[h] = wd.double()
        err_w[h] = _rel(_unrotate(wd, h) - W64, w_norm)

    rows = []
    for dist in distributions:
        X = operands[dist][0]
        X64 = X.double()
        Y = X64 @ W64.T
        y_norm = float(torch.linalg.vector_norm(Y).item())
        x_norm = float(torch.linalg.vector_norm(X64).item())
        for h in sizes:
            row = dict(
                N=N,
                K=K,
                format=fmt,
                distribution=dist,
                had_size=h,
                tokens=tokens,
                out_channels=n,
                seed=seed,
            )
            if h in reasons:
                rows.append(
                    row
                    | dict(
                        status="skipped",
                        reason=reasons[h],
                        err_output=math.nan,
                        err_activation=math.nan,
                        err_weight=math.nan,
                    )
                )
                continue
            xd = fake_quantize(X, h, fmt)
            Yq = xd.double() @ w_deq[h].T
            rows.append(
                row
                | dict(
                    status="ok",
                    reason="",
                    err_output=_rel(Yq - Y, y_norm),
                    err_activation=_rel(_unrotate(xd, h) - X64, x_norm),
                    err_weight=err_w[h],
                )
            )
    return pd.DataFrame(rows, columns=COLUMNS)
