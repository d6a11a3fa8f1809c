"""What a provider is: an availability check and a builder of the timed call plus its reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# The GEMM does not depend on the Hadamard size; the noquant providers quantize their inputs with
# this one (any valid size gives the same kernel work): the smallest of each format.
NOQUANT_HAD_SIZE = 16
MX_NOQUANT_HAD_SIZE = 32

# The reference of a prepared call: float64 expected output at the given rows (of M) and columns
# (of N). Sampled, because a float64 product of a whole 32768 x 57344 x 8192 GEMM takes minutes.
Reference = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Prepared:
    """One provider set up for one problem: `run()` is what gets timed."""

    run: Callable[[], torch.Tensor]
    reference: Reference
    # Largest acceptable relative Frobenius error of run() against reference on the sample.
    tolerance: float
    # Which kernel (and configuration) run() launches, where the provider chooses among several.
    kernel: str = ""


@dataclass(frozen=True)
class Provider:
    """A backend the sweep can time. The contract, as the sweep (``sweep._measure``) applies it:

    * ``unavailable_reason(device)`` is checked once per shape; a reason skips every row of the
      provider with that reason.
    * ``prepare`` raising ``ValueError`` means "this input is not supported" (for example a K the
      kernel cannot tile): that row is ``skipped`` with the message as its reason.
    * Any other exception, from ``prepare`` or the timed ``run``, marks the row ``failed`` and the
      worker process is replaced before the next row (a CUDA error may poison the context);
      ``torch.OutOfMemoryError`` fails the row without a new worker.
    * ``run()``'s output is compared with ``reference`` on a seeded sample of rows and columns
      before timing; above ``tolerance`` the row is ``failed`` ("wrong result") and not timed.
    """

    name: str
    description: str
    # Timed once per Hadamard size (True) or once per batch size (False, e.g. BF16, noquant GEMM).
    uses_had_size: bool
    # None when the provider can run on this device, else the reason it cannot (one line).
    unavailable_reason: Callable[[torch.device], str | None]
    # (a bf16 [M, K], b bf16 [N, K], had_size or None) -> Prepared
    prepare: Callable[[torch.Tensor, torch.Tensor, int | None], Prepared]
    # The provider every speedup is measured against; exactly one in the registry is.
    baseline: bool = False
    # CPU-only work (compiling kernels) that the sweep starts in background processes while
    # earlier providers time: (the GPU's compute capability) -> independent picklable jobs. A job
    # that fails is ignored: the provider then does that work itself, as without prebuild.
    prebuild: Callable[[tuple[int, int]], list[Callable[[], object]]] | None = None
    # The 4-bit format it computes (numerics.FORMATS), None for the baseline: the config's
    # `formats` picks the providers that run, and each format's rows go to their own bench job.
    format: str | None = "nvfp4"


def fp4_pair(
    name: str,
    *,
    format: str,  # noqa: A002 (the Provider field's name)
    description: str,
    noquant_description: str,
    unavailable_reason: Callable[[torch.device], str | None],
    make_prepare: Callable[[bool], Callable[[torch.Tensor, torch.Tensor, int | None], Prepared]],
    prebuild: Callable[[tuple[int, int]], list[Callable[[], object]]] | None = None,
) -> list[Provider]:
    """The two providers of one NVFP4 or MXFP4 implementation: `name` rotates and quantizes the
    activation inside the timed call, then runs the GEMM (timed per Hadamard size); `name`-noquant
    times the GEMM alone on an activation quantized beforehand (once per batch size).
    ``make_prepare(quantize_activation)`` builds each one's ``prepare``."""
    # (name, description, quantizes the activation in the timed call)
    roles = ((name, description, True), (f"{name}-noquant", noquant_description, False))
    return [
        Provider(
            name=role_name,
            description=role_description,
            uses_had_size=quantizes,
            unavailable_reason=unavailable_reason,
            prepare=make_prepare(quantizes),
            prebuild=prebuild,
            format=format,
        )
        for role_name, role_description, quantizes in roles
    ]


def nvfp4_prepared(
    gemm: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    quantize: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None,
    prequantized: tuple[torch.Tensor, torch.Tensor],
    operands: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    kernel: str,
) -> Prepared:
    """The timed call of an NVFP4 provider with global scales 1: ``gemm(*quantize())`` (the
    activation quantized inside the timed call) or, where `quantize` is None, ``gemm`` on the
    `prequantized` activation. Checked against the float64 product of `operands` (activation
    codes and scales, weight codes and scales, linear scales)."""
    if quantize is not None:

        def run():
            return gemm(*quantize())
    else:

        def run():
            return gemm(*prequantized)

    reference = fp4_product_reference(*operands, 1.0)
    # Exact up to fp32 accumulation order and the bf16 output rounding.
    return Prepared(run=run, reference=reference, tolerance=1e-2, kernel=kernel)


def fp4_product_reference(
    a_packed: torch.Tensor,
    a_scales: torch.Tensor,
    b_packed: torch.Tensor,
    b_scales: torch.Tensor,
    alpha: float,
    fmt: str = "nvfp4",
) -> Reference:
    """float64 alpha * A_dq[rows] @ B_dq[cols]^T of an NVFP4 (MXFP4) provider's own quantized
    operands (linear scales, one row per operand row, K/16 (K/32) columns)."""
    from ..numerics import dequantize_mxfp4, dequantize_nvfp4

    dequantize = dequantize_mxfp4 if fmt == "mxfp4" else dequantize_nvfp4

    def reference(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        a_dq = dequantize(a_packed[rows], a_scales[rows]).double()
        b_dq = dequantize(b_packed[cols], b_scales[cols]).double()
        return a_dq @ b_dq.T * alpha

    return reference
