"""Running one provider the way the sweep does, in this process, for the contract tests."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch
from test_sweep import settings as sweep_settings

from nvfp4bench import sweep
from nvfp4bench.numerics import HAD_SIZES
from nvfp4bench.providers import get_provider


def measure(name: str, M: int, N: int, K: int, had_size: int | None) -> dict:
    """One bench row as the sweep makes it (``sweep._measure``): prepare, run, the float64 check
    on a sample of the output, then timing; on the CPU, with whatever stand-ins are installed."""
    settings = dataclasses.replace(
        sweep_settings(), N=N, K=K, batch_sizes=(M,), had_sizes=(had_size,) if had_size else (),
        providers=(name,), rep_ms=1.0,
    )  # fmt: skip
    weight = torch.randn(N, K, generator=torch.Generator().manual_seed(N + K)).to(torch.bfloat16)
    key = sweep.RowKey(name, had_size, M, "cpu")
    row, _ = sweep._measure(settings, get_provider(name), key, weight, torch.device("cpu"), {})
    return row


def capability(monkeypatch, value: tuple[int, int] | None) -> None:
    """Make every provider's capability check see `value` (None: no CUDA GPU)."""
    from nvfp4bench.providers import requirements

    monkeypatch.setattr(requirements, "compute_capability", lambda device: value)


def pair_reason(monkeypatch, value: tuple[int, int] | None, name: str) -> str | None:
    """The reason the provider pair `name`, `name`-noquant gives on a CUDA GPU of capability
    `value` (None: none): the same for both, and one line."""
    capability(monkeypatch, value)
    cuda = torch.device("cuda")
    (text,) = {get_provider(n).unavailable_reason(cuda) for n in (name, f"{name}-noquant")}
    assert text is None or "\n" not in text
    return text


def contract_cases(name: str, decode_shape: tuple, larger_shape: tuple):
    """The cases of one NVFP4 provider pair, as (name, had_size, (M, N, K)) parameters: every had
    size (and none) and the noquant GEMM on a decode shape, then both on a larger shape (a second
    128-row block of the activation). Choose M and N that are not multiples of 128, so the scales
    need padded rows."""
    cases = [(name, had, decode_shape) for had in (None, *HAD_SIZES)] + [
        (f"{name}-noquant", None, decode_shape),
        (name, 16, larger_shape),
        (f"{name}-noquant", None, larger_shape),
    ]
    ids = [f"{n}-had{h}-{m}x{n_}x{k}" for n, h, (m, n_, k) in cases]
    return pytest.mark.parametrize("name, had_size, shape", cases, ids=ids)


def compiled_mma(capability: int, fmt: str = "nvfp4") -> list[str]:
    """The MMA instructions of the ``tl.dot_scaled`` GEMM for `fmt` compiled for `capability`
    (``triton_dot_scaled.mma_instructions``). In a process of its own: with TRITON_INTERPRET set
    (this session) nothing is compiled."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    script = (
        "from nvfp4bench.kernels.triton_dot_scaled import mma_instructions\n"
        f"print(*sorted(mma_instructions({capability}, {fmt!r})))"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def compiled_quantizer(capability: int, fmt: str, had_size: int) -> int:
    """Compiles the Triton Hadamard + `fmt` quantizer (``triton_nvfp4.quantize``'s kernel, as
    ``quantize_nvfp4`` launches it with 128 elements per group tile) for `capability`, in a
    process without TRITON_INTERPRET; returns the PTX's length."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    block = 32 if fmt == "mxfp4" else 16
    constexprs = dict(R=had_size, BLOCK_G=max(16, 2048 // had_size), ROTATE=True,
                      WRITE_LINEAR=True, WRITE_SWIZZLED=fmt == "nvfp4", DOT_F32=False,
                      MX=fmt == "mxfp4", SB=block)  # fmt: skip
    script = f"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from nvfp4bench.kernels.triton_nvfp4.quantize import _quantize_kernel
constexprs = {constexprs!r}
signature = {{"x_ptr": "*bf16", "h_ptr": "*bf16", "gs_ptr": "*fp32", "q_ptr": "*u8",
             "s_ptr": "*u8", "sw_ptr": "*u8", "n_groups": "i32", "groups_per_row": "i32",
             "sw_col_blocks": "i32", **dict.fromkeys(constexprs, "constexpr")}}
source = ASTSource(_quantize_kernel, signature, constexprs=constexprs)
print(len(triton.compile(source, target=GPUTarget("cuda", {capability}, 32)).asm["ptx"]))
"""
    done = subprocess.run([sys.executable, "-c", script], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1])
