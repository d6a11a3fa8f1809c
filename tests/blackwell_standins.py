"""Test-only stand-ins for the Blackwell entry points that no GPU here can run, on the CPU.

Each has the upstream signature, dtypes, padding, layout and output shape, read from the source
named below, checks them as strictly as upstream does (stricter where upstream only fails later on
the GPU), and computes with ``nvfp4bench.numerics``. They are installed by the contract tests
only (``monkeypatch``), never shipped in the package, so they never produce a row outside tests.

Sources (the file's commit in the public repository, as read):

* vLLM ``vllm/_custom_ops.py`` @ 0002bde560dd9adcabb28b0da32f47d4c020e799: ``fusedQuantizeNv(a,
  b, global_scale)`` allocates packed uint8 [..., K/2] and float8_e4m3fn scales padded to
  [ceil(rows/128)*128, ceil(K/16/4)*4]; ``cutlass_scaled_fp4_mm(a, b, block_scale_a,
  block_scale_b, alpha, out_dtype)`` asserts 2-D operands and returns [m, n] of out_dtype;
  ``cutlass_scaled_mm_supports_fp4(cuda_device_capability)``.
* vLLM ``vllm/model_executor/layers/quantization/qutlass_utils.py`` @
  02c4fa8e4f809740c17675e5dcbbce35a0917a80: ``to_blocked(input_matrix, backend="triton")``, a flat
  tensor of the padded size; the triton backend asserts 1-byte contiguous input.
* vLLM ``csrc/libtorch_stable/quantization/fp4/nvfp4_scaled_mm_kernels.cu`` @
  2a814fefa0e5c9459ead27346694eb588d2c9515: the GEMM's checks (uint8 / float8_e4m3fn / float32,
  contiguous, k and n multiples of 32, scales [round_up(m or n, 128), round_up(k/16, 4)], output
  bf16 or fp16) and ``nvfp4_scaled_mm_entry.cu``: supports_fp4 is capability >= 100 and CUDA >=
  12.8.
* IST-DASLab/qutlass ``qutlass/csrc/bindings.cpp`` @ e74319e3405ce6d71965732880f5dc1f52371f64:
  ``fusedQuantizeNvAbsMax`` checks (bf16 input and rotation, square rotation of 16/32/64/128,
  float32 global scale of shape [1], contiguous) and writes the scales linearly (row stride K/16)
  into the padded buffer, leaving the padding unwritten.
* PyTorch ``aten/src/ATen/native/cuda/ScaledBlas.cpp`` @ 0174dfabc023f11a8f78c79c301b49c8d7e02c8b:
  ``_scaled_mm(mat1, mat2, scale_a, scale_b, bias=None, scale_result=None, out_dtype=None,
  use_fast_accum=False)``; the NVFP4 recipe (BlockWise1x16) is float4_e2m1fn_x2 operands with
  contiguous float8_e4m3fn scales of round_up(rows, 128) * round_up(K/16, 4) elements, mat1
  row-major and mat2 column-major, sizes multiples of 16, no fast accumulation; and
  ``test/test_scaled_matmul_cuda.py`` @ 00166b21d1129b5cdfac0408018c25eb9659d288 for the call.
* vLLM ``benchmarks/kernels/bench_mxfp4_qutlass.py`` @ e5fd201ab77b993462f5b1cc3e55c74dc74bed95
  and ``vllm/_custom_ops.py`` (same tree): ``fusedQuantizeMx(a, b, *, method)`` allocates packed
  uint8 [..., K/2] and float8_e8m0fnu scales padded to [ceil(rows/128)*128, ceil(K/32/4)*4] and
  calls ``torch.ops._qutlass_C.fusedQuantizeMxAbsMax``; ``matmul_mxf4_bf16_tn(a, b, a_sf, b_sf,
  alpha)`` returns bf16 [m, n]. IST-DASLab/qutlass ``epilogue_quant.h`` @
  a33f3972cedcf5293c1021ab0e1f921b2a604b55: abs_max stores the exponent bits of amax + 1e-8 and
  encodes 3 * y / scale.
* Triton: its interpreter (3.9 here) decodes every ``tl.dot_scaled`` scale as E8M0, so a kernel
  given float8_e4m3fn scales gets them wrong; ``e4m3_dot_scaled`` decodes those as E4M3, as the
  block-scaled tensor cores do.
"""

from __future__ import annotations

import contextlib
import sys
import types

import torch

from nvfp4bench import numerics

UNWRITTEN = 0x7F  # e4m3 NaN: padding that upstream leaves uninitialised must never be read


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(message)


def _padded(rows: int, k: int) -> tuple[int, int]:
    return -(-rows // 128) * 128, -(-(k // 16) // 4) * 4


# ------------------------------------------------------------------------------------------------
# vLLM: fusedQuantizeNv, to_blocked, cutlass_scaled_fp4_mm, cutlass_scaled_mm_supports_fp4
# ------------------------------------------------------------------------------------------------


def fusedQuantizeNv(a: torch.Tensor, b: torch.Tensor, global_scale: torch.Tensor):  # noqa: N802
    _require(a.dtype == torch.bfloat16, "A must be bf16")
    _require(b.dtype == torch.bfloat16, "B must be bf16")
    _require(global_scale.dtype == torch.float32, "global_scale must be float")
    _require(global_scale.dim() == 1 and global_scale.size(0) == 1, "global_scale must be a scalar")
    _require(b.dim() == 2 and b.size(0) == b.size(1), "Rotation matrix must be square")
    _require(a.is_contiguous() and b.is_contiguous(), "fusedQuantizeNv: tensors must be contiguous")
    had = b.size(0)
    _require(had in numerics.HAD_SIZES, f"Unsupported rotation size {had}")
    _require(a.numel() % had == 0, f"A must be divisible by {had}")
    K = a.size(-1)
    rows = a.numel() // K
    # Each run of `had` values times b (bf16 products, fp32 sums), then NVFP4 of the result; the
    # qutlass version vLLM pins divides by the unrounded scale (docs/nvfp4-spec.md).
    rotated = (a.float().reshape(-1, had) @ b.float()).reshape(a.shape)
    packed, scales = numerics.quantize_nvfp4(rotated, None, global_scale, rounded_scale=False)
    padded = torch.full(_padded(rows, K), UNWRITTEN, dtype=torch.uint8)
    padded.view(-1)[: rows * (K // 16)] = scales.view(torch.uint8).reshape(-1)
    return packed, padded.view(torch.float8_e4m3fn)


def to_blocked(input_matrix: torch.Tensor, backend: str = "triton") -> torch.Tensor:
    if backend not in ("torch", "triton"):
        raise ValueError(f'backend must be "torch" or "triton", got {backend!r}')
    rows, cols = input_matrix.shape
    if backend == "triton":
        assert input_matrix.element_size() == 1, "Expected element size to be 1 byte (8 bits)"
        assert input_matrix.is_contiguous(), "Input tensor must be contiguous"
    else:
        assert (rows, cols) == (-(-rows // 128) * 128, -(-cols // 4) * 4)
    return numerics.to_blocked(input_matrix).flatten()


def cutlass_scaled_fp4_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    block_scale_a: torch.Tensor,
    block_scale_b: torch.Tensor,
    alpha: torch.Tensor,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    assert a.ndim == 2 and b.ndim == 2
    for tensor, dtype, name in (
        (a, torch.uint8, "a"),
        (b, torch.uint8, "b"),
        (block_scale_a, torch.float8_e4m3fn, "scale_a"),
        (block_scale_b, torch.float8_e4m3fn, "scale_b"),
        (alpha, torch.float32, "alpha"),
    ):
        _require(tensor.is_contiguous(), f"{name}: must be contiguous")
        _require(tensor.dtype == dtype, f": Inconsistency of Tensor type: {name}")
    _require(a.size(1) == b.size(1), f"a and b shapes cannot be multiplied ({a.shape}, {b.shape})")
    m, n, k = a.size(0), b.size(0), a.size(1) * 2
    _require(k % 32 == 0, f"Expected k to be divisible by 32, got {k}")
    _require(n % 32 == 0, f"Expected n to be divisible by 32, got b shape {tuple(b.shape)}")
    _require(block_scale_a.dim() == 2 and block_scale_b.dim() == 2, "scales must be matrices")
    for scale, rows, name in ((block_scale_a, m, "scale_a"), (block_scale_b, n, "scale_b")):
        _require(
            tuple(scale.shape) == _padded(rows, k),
            f"{name} must be padded and swizzled to a shape {_padded(rows, k)}, got {scale.shape}",
        )
    _require(out_dtype in (torch.bfloat16, torch.float16), f"Unsupported output {out_dtype}")
    a_dq = numerics.dequantize_nvfp4(a, numerics.from_blocked(block_scale_a, m, k // 16))
    b_dq = numerics.dequantize_nvfp4(b, numerics.from_blocked(block_scale_b, n, k // 16))
    return (a_dq.double() @ b_dq.double().T * alpha.double()).to(out_dtype)


def cutlass_scaled_mm_supports_fp4(cuda_device_capability: int) -> bool:
    return cuda_device_capability >= 100  # and a CUDA >= 12.8 build, which this stands for


def fusedQuantizeMx(a: torch.Tensor, b: torch.Tensor, *, method: str = "quest"):  # noqa: N802
    _require(method == "abs_max", "this stand-in has qutlass's abs_max method only")
    _require(a.dtype == torch.bfloat16 and b.dtype == torch.bfloat16, "A and B must be bf16")
    _require(b.dim() == 2 and b.size(0) == b.size(1), "Rotation matrix must be square")
    _require(b.size(0) in numerics.MX_HAD_SIZES, f"Unsupported rotation size {b.size(0)}")
    _require(a.is_contiguous() and b.is_contiguous(), "fusedQuantizeMx: tensors must be contiguous")
    K = a.size(-1)
    _require(K % 32 == 0, f"last dim of `a` must be divisible by 32, got {K}.")
    rows = a.numel() // K
    had = b.size(0)
    y = (a.float().reshape(-1, had) @ b.float()).reshape(rows, K // 32, 32)
    # qutlass abs_max: the scale is amax + 1e-8 with its mantissa cleared; codes of 3 * y / scale.
    bits = ((y.abs().amax(-1) + 1e-8).view(torch.int32) & 0x7F800000).view(torch.float32)
    codes = numerics._e2m1_codes(y / bits.unsqueeze(-1) * 3).reshape(rows, K)
    padded = torch.full(_padded(rows, K * 16 // 32), 0xFF, dtype=torch.uint8)  # e8m0 NaN
    padded.view(-1)[: rows * (K // 32)] = (bits.view(torch.int32) >> 23).to(torch.uint8).flatten()
    packed = numerics._pack_nibbles(codes).reshape(*a.shape[:-1], K // 2)
    return packed, padded.view(torch.float8_e8m0fnu)


def matmul_mxf4_bf16_tn(a, b, a_sf, b_sf, alpha):  # noqa: N802
    for tensor, dtype, name in ((a, torch.uint8, "a"), (b, torch.uint8, "b"),
                                (a_sf, torch.float8_e8m0fnu, "a_sf"),
                                (b_sf, torch.float8_e8m0fnu, "b_sf"),
                                (alpha, torch.float32, "alpha")):  # fmt: skip
        _require(tensor.is_contiguous(), f"{name}: must be contiguous")
        _require(tensor.dtype == dtype, f"{name}: must be {dtype}, got {tensor.dtype}")
    _require(a.dim() == 2 and b.dim() == 2 and a.size(1) == b.size(1), "a and b must be [m|n, k/2]")
    m, n, k = a.size(0), b.size(0), a.size(1) * 2
    for scale, rows, name in ((a_sf, m, "a_sf"), (b_sf, n, "b_sf")):
        size = _padded(rows, k * 16 // 32)
        _require(scale.numel() == size[0] * size[1], f"{name} must be the swizzled {size}")
    a_dq = numerics.dequantize_mxfp4(a, numerics.from_blocked(a_sf, m, k // 32))
    b_dq = numerics.dequantize_mxfp4(b, numerics.from_blocked(b_sf, n, k // 32))
    return (a_dq.double() @ b_dq.double().T * alpha.double()).to(torch.bfloat16)


def install_vllm(monkeypatch) -> types.SimpleNamespace:
    """Put a ``vllm`` package with these entry points in sys.modules for this test; returns its
    modules (patch their attributes to change what the provider calls)."""
    custom_ops = types.ModuleType("vllm._custom_ops")
    custom_ops.fusedQuantizeNv = fusedQuantizeNv
    custom_ops.cutlass_scaled_fp4_mm = cutlass_scaled_fp4_mm
    custom_ops.cutlass_scaled_mm_supports_fp4 = cutlass_scaled_mm_supports_fp4
    custom_ops.fusedQuantizeMx = fusedQuantizeMx
    custom_ops.matmul_mxf4_bf16_tn = matmul_mxf4_bf16_tn
    qutlass_utils = types.ModuleType("vllm.model_executor.layers.quantization.qutlass_utils")
    qutlass_utils.to_blocked = to_blocked
    tree = {
        "vllm": types.ModuleType("vllm"),
        "vllm._custom_ops": custom_ops,
        "vllm.model_executor": types.ModuleType("vllm.model_executor"),
        "vllm.model_executor.layers": types.ModuleType("vllm.model_executor.layers"),
        "vllm.model_executor.layers.quantization": types.ModuleType(
            "vllm.model_executor.layers.quantization"
        ),
        "vllm.model_executor.layers.quantization.qutlass_utils": qutlass_utils,
    }
    for name, module in tree.items():
        monkeypatch.setitem(sys.modules, name, module)
        parent, _, child = name.rpartition(".")
        if parent:
            monkeypatch.setattr(tree[parent], child, module, raising=False)
    return types.SimpleNamespace(custom_ops=custom_ops, qutlass_utils=qutlass_utils)


@contextlib.contextmanager
def registered_ops(c_ops=("cutlass_scaled_fp4_mm", "cutlass_scaled_mm_supports_fp4"),
                   qutlass_ops=("fusedQuantizeNvAbsMax",)):  # fmt: skip
    """Schemas under the torch.ops namespaces a vLLM build registers (none has a kernel)."""
    schemas = {
        "cutlass_scaled_fp4_mm": "cutlass_scaled_fp4_mm(Tensor(a!) out, Tensor a, Tensor b, "
        "Tensor block_scale_a, Tensor block_scale_b, Tensor alpha) -> ()",
        "cutlass_scaled_mm_supports_fp4": "cutlass_scaled_mm_supports_fp4(int cap) -> bool",
        "fusedQuantizeNv": "fusedQuantizeNv(Tensor A, Tensor R, Tensor OUT, Tensor OUT_sf, "
        "Tensor global_scale) -> (Tensor, Tensor)",
        "fusedQuantizeNvAbsMax": "fusedQuantizeNvAbsMax(Tensor A, Tensor R, Tensor OUT, "
        "Tensor OUT_sf, Tensor global_scale) -> (Tensor, Tensor)",
        "fusedQuantizeMxAbsMax": "fusedQuantizeMxAbsMax(Tensor A, Tensor R, Tensor OUT, "
        "Tensor OUT_sf) -> (Tensor, Tensor)",
        "matmul_mxf4_bf16_tn": "matmul_mxf4_bf16_tn(Tensor a, Tensor b, Tensor a_sf, Tensor b_sf, "
        "Tensor alpha) -> Tensor",
    }
    with (
        torch.library._scoped_library("_C", "FRAGMENT") as c_lib,
        torch.library._scoped_library("_qutlass_C", "FRAGMENT") as qutlass_lib,
    ):
        for name in c_ops:
            c_lib.define(schemas[name])
        for name in qutlass_ops:
            qutlass_lib.define(schemas[name])
        yield


# ------------------------------------------------------------------------------------------------
# torch._scaled_mm, NVFP4 recipe
# ------------------------------------------------------------------------------------------------


def _scaled_mm(
    mat1: torch.Tensor,
    mat2: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale_result: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    use_fast_accum: bool = False,
) -> torch.Tensor:
    fp4 = torch.float4_e2m1fn_x2
    _require(mat1.dim() == 2 and mat2.dim() == 2, "mat1 and mat2 must be matrices")
    _require(
        mat1.size(1) == mat2.size(0), f"shapes cannot be multiplied ({mat1.shape}, {mat2.shape})"
    )
    M, N, K = mat1.size(0), mat2.size(1), mat1.size(1) * 2
    if mat1.dtype != fp4 or mat2.dtype != fp4 or scale_a.dtype != torch.float8_e4m3fn:
        raise ValueError(
            f"Invalid scaling configuration (this stand-in has only the NVFP4 recipe): got "
            f"{mat1.dtype}, {mat2.dtype}, scale_a {scale_a.dtype}"
        )
    for scale, rows, name in ((scale_a, M, "scale_a"), (scale_b, N, "scale_b")):
        needed = _padded(rows, K)[0] * _padded(rows, K)[1]
        if scale.dtype != torch.float8_e4m3fn or scale.numel() != needed:
            raise ValueError(
                f"Invalid scaling configuration: {name} should have {needed} float8_e4m3fn "
                f"elements, got {scale.numel()} {scale.dtype}"
            )
        _require(scale.is_contiguous(), f"{name} must be contiguous")
    _require(bias is None, "this stand-in has no bias")
    _require(scale_result is None, "scale_result applies to float8 outputs only")
    _require(mat1.size(1) % 16 == 0, f"trailing dimension of mat1 {tuple(mat1.shape)} % 16")
    _require(mat2.size(0) % 16 == 0 and N % 16 == 0, f"mat2 shape {tuple(mat2.shape)} % 16")
    _require(not use_fast_accum, "`use_fast_accum` is not supported for Float4_e2m1fn_x2")
    # "Only works if mat1 is row-major and mat2 is column-major" (cuBLASLt's FP4 layouts)
    _require(mat1.is_contiguous(), "mat1 must be row-major")
    _require(mat2.t().is_contiguous(), "mat2 must be column-major")
    _require(out_dtype in (torch.bfloat16, torch.float16, torch.float32), f"out_dtype {out_dtype}")
    a_dq = numerics.dequantize_nvfp4(
        mat1.view(torch.uint8), numerics.from_blocked(scale_a, M, K // 16)
    )
    b_dq = numerics.dequantize_nvfp4(
        mat2.t().view(torch.uint8), numerics.from_blocked(scale_b, N, K // 16)
    )
    return (a_dq.double() @ b_dq.double().T).to(out_dtype)


# ------------------------------------------------------------------------------------------------
# Triton's interpreter: E4M3 scales of tl.dot_scaled
# ------------------------------------------------------------------------------------------------


def e4m3_dot_scaled(monkeypatch) -> None:
    """Make the Triton interpreter decode float8_e4m3fn ``tl.dot_scaled`` scales as E4M3."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    e8m0 = interpreter._dot_scaled_scale_to_f32

    def decode(scale_handle, compute_type):
        if scale_handle.dtype != tl.float8e4nv:
            return e8m0(scale_handle, compute_type)
        codes = torch.from_numpy(np.ascontiguousarray(scale_handle.data).view(np.uint8))
        return codes.view(torch.float8_e4m3fn).float().numpy()

    monkeypatch.setattr(interpreter, "_dot_scaled_scale_to_f32", decode)
