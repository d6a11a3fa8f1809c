"""The provider registry: every benchmarked implementation, with its availability.

A provider is added in one module plus one line in `_FAMILIES`. Extra provider modules (plugins,
tests) can be named in NVFP4BENCH_PROVIDER_MODULES (comma-separated import paths), each exposing a
`PROVIDERS` list; the variable is inherited by the worker processes that run the providers.
"""

from __future__ import annotations

import importlib
import os

import torch

from . import (
    cuda_nvfp4,
    torch_bf16,
    torch_nvfp4,
    triton_mxfp4,
    triton_nvfp4,
    vllm_cutlass,
    vllm_qutlass_mxfp4,
)
from .base import Prepared, Provider

_FAMILIES = [
    torch_bf16,
    vllm_cutlass,
    torch_nvfp4,
    triton_nvfp4,
    cuda_nvfp4,
    vllm_qutlass_mxfp4,
    triton_mxfp4,
]


def _load() -> dict[str, Provider]:
    modules = list(_FAMILIES)
    extra = os.environ.get("NVFP4BENCH_PROVIDER_MODULES", "")
    modules += [importlib.import_module(name) for name in extra.split(",") if name.strip()]
    return {p.name: p for module in modules for p in module.PROVIDERS}


PROVIDERS: dict[str, Provider] = _load()


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(PROVIDERS)
        raise ValueError(f"unknown provider {name!r}; known: {known}") from None


def baseline_name() -> str:
    """The provider that speedups are measured against (the one flagged ``baseline``)."""
    names = [name for name, provider in PROVIDERS.items() if provider.baseline]
    if len(names) != 1:
        raise ValueError(f"the registry needs exactly one baseline provider; it has {names}")
    return names[0]


def availability(names: list[str], device: torch.device) -> dict[str, str | None]:
    """name -> None (runs here) or the reason it is skipped."""
    return {name: get_provider(name).unavailable_reason(device) for name in names}


__all__ = ["PROVIDERS", "Prepared", "Provider", "availability", "baseline_name", "get_provider"]
