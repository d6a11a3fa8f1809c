"""What a provider needs in order to run here: availability checks (a device -> None, or the
one-line reason its rows are skipped) and ways to combine them."""

from __future__ import annotations

from collections.abc import Callable

import torch

Check = Callable[[torch.device], str | None]


def compute_capability(device: torch.device) -> tuple[int, int] | None:
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


def needs_cuda_capability(minimum: tuple[int, int]) -> Check:
    """An availability check on the CUDA compute capability."""
    wanted = f"{minimum[0]}.{minimum[1]}"

    def check(device: torch.device) -> str | None:
        cap = compute_capability(device)
        if cap is None:
            return f"needs a CUDA GPU (compute capability >= {wanted}); ran on {device.type}"
        if cap < minimum:
            return f"needs compute capability >= {wanted}; this GPU is {cap[0]}.{cap[1]}"
        return None

    return check


def one_line(text: str) -> str:
    """A reason as one line, whatever the exception said."""
    return " ".join(text.split())


def first_reason(*checks: Check) -> Check:
    """An availability check made of `checks`, run in order: the first reason one gives, or None
    when all pass (so that a cheap check spares the costly ones)."""

    def check(device: torch.device) -> str | None:
        for each in checks:
            reason = each(device)
            if reason:
                return reason
        return None

    return check


def loads(what: str, attempt: Callable[[torch.device], object]) -> Check:
    """An availability check that calls `attempt(device)` (an import, a compilation): where it
    raises, the reason is `what`, the exception's type and its first line."""

    def check(device: torch.device) -> str | None:
        try:
            attempt(device)
        except Exception as error:  # ImportError, a library that fails to load, a compile error
            lines = str(error).strip().splitlines()
            return f"{what}: {type(error).__name__}: {lines[0] if lines else ''}"
        return None

    return check


def vllm_build(
    needs: str,
    capable: Callable[[tuple[int, int]], bool],
    load: Callable[[], object],
    missing_ops: Callable[[], list[str]],
) -> Check:
    """What every vLLM provider checks first: a CUDA GPU of a compute capability its kernels are
    built for (`capable`; `needs` says which, in the reason, so that a Hopper user reads that the
    GPU, not a missing vLLM, keeps these rows from running), vLLM's entry points importable
    (`load` imports them) and the registered ops they call present (`missing_ops`: the qualified
    names of those absent)."""

    def check(device: torch.device) -> str | None:
        cap = compute_capability(device)
        if cap is None:
            return f"needs a CUDA GPU ({needs}) and vLLM; ran on {device.type}"
        if not capable(cap):
            return f"needs {needs}; this GPU is {cap[0]}.{cap[1]}"
        try:
            load()
        except Exception as error:  # ImportError, or a vLLM that fails to load
            return one_line(f"vLLM not importable: {type(error).__name__}: {error}")
        missing = missing_ops()
        if missing:
            return f"this vLLM build registers no {', '.join(missing)}"
        return None

    return check
