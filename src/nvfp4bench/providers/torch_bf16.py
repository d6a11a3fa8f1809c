"""The baseline: BF16 `F.linear` (cuBLAS on GPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Prepared, Provider


def _prepare(a: torch.Tensor, b: torch.Tensor, had_size: int | None) -> Prepared:
    def reference(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return a[rows].double() @ b[cols].double().T

    return Prepared(run=lambda: F.linear(a, b), reference=reference, tolerance=1e-2)


PROVIDERS = [
    Provider(
        name="torch-bf16",
        description="torch.nn.functional.linear in bf16",
        uses_had_size=False,
        unavailable_reason=lambda device: None,
        prepare=_prepare,
        baseline=True,
        format=None,
    )
]
