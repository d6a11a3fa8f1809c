"""nvfp4bench.numerics' MXFP4 against an independent float64/numpy implementation of the OCP MX
rule (docs/nvfp4-spec.md, "MXFP4"): the shared exponent from ``log2`` in float64, the E2M1 grid
by enumeration with explicit tie-to-even handling. Inputs are fresh random every run (the seed is
printed; NVFP4_TEST_SEED pins it), Gaussian, heavy-tailed and log-normal, at magnitudes from
1e-30 to 1e30.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_numerics import E2M1_POS, gen, module_codes, ref_rotate, ref_round_index, student_t

from nvfp4bench import numerics as nm

__all__ = ["gen"]  # the seeded generator fixture, shared with test_numerics


def ref_mx_quantize(y: np.ndarray):
    """float32 y [R, K] -> (E8M0 codes [R, K/32], E2M1 codes [R, K]) by the OCP MX rule in
    float64: X = 2**(floor(log2(amax)) - 2), clamped to 2**-127 .. 2**127; q = RNE(y / X)."""
    y = np.asarray(y, dtype=np.float64)
    R, K = y.shape
    yb = y.reshape(R, K // 32, 32)
    amax = np.abs(yb).max(axis=-1)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(amax))
    scale_codes = np.where(amax == 0, 0, np.clip(exponent - 2 + 127, 0, 254)).astype(np.int64)
    v = yb / 2.0 ** (scale_codes - 127.0)[..., None]
    codes = ref_round_index(np.abs(v), E2M1_POS) | (np.signbit(v).astype(np.int64) << 3)
    return scale_codes.astype(np.uint8), codes.reshape(R, K)


def ref_mx_dequantize(codes: np.ndarray, scale_codes: np.ndarray) -> np.ndarray:
    mag = E2M1_POS[codes & 7] * np.where(codes & 8, -1.0, 1.0)
    R, K = codes.shape
    scale = 2.0 ** (scale_codes.astype(np.float64) - 127.0)
    return (mag.reshape(R, K // 32, 32) * scale[..., None]).reshape(R, K)


def fresh_rows(g: torch.Generator, K: int = 512) -> torch.Tensor:
    """Gaussian, Student-t (df 2: heavy tails) and log-normal rows at random magnitudes from
    1e-30 to 1e30 (E8M0 covers them all), with one all-zero block and one block of exact E2M1
    grid points times a power of two (where the MX rule must be lossless)."""
    n = 8
    x = torch.cat(
        [
            torch.randn(n, K, generator=g, dtype=torch.float64),
            student_t((n, K), 2.0, g),
            torch.exp(torch.randn(n, K, generator=g, dtype=torch.float64) * 2)
            * torch.where(torch.rand(n, K, generator=g) < 0.5, -1.0, 1.0).double(),
        ]
    )
    x = x * 10.0 ** (torch.rand(x.shape[0], 1, generator=g, dtype=torch.float64) * 60 - 30)
    x[0, :32] = 0.0
    grid = torch.tensor(E2M1_POS)[torch.randint(0, 8, (32,), generator=g)]
    x[1, 32:64] = grid * 2.0 ** int(torch.randint(-20, 20, (), generator=g))
    return x


@pytest.mark.parametrize("had_size", [None, 32, 64, 128])
def test_quantize_matches_float64_given_rotation(had_size, gen):
    """Scales and codes bit-equal to the float64 rule, given the (separately tested) rotation."""
    x = fresh_rows(gen).to(torch.bfloat16)
    packed, scales = nm.quantize_mxfp4(x, had_size)
    ref_scales, ref_codes = ref_mx_quantize(nm.rotate(x, had_size).numpy())
    np.testing.assert_array_equal(scales.numpy(), ref_scales)
    np.testing.assert_array_equal(module_codes(packed), ref_codes)
    np.testing.assert_array_equal(
        nm.dequantize_mxfp4(packed, scales).double().numpy(),
        ref_mx_dequantize(ref_codes, ref_scales),
    )


@pytest.mark.parametrize("had_size", [32, 128])
def test_quantize_vs_float64_rotation_heavy_tails(had_size, gen):
    """End to end against a float64 rotation of heavy-tailed data: only near-tie flips (fp32 vs
    float64 sums), and the error of the dequantized values is what the format allows."""
    x = student_t((64, 2048), 2.0, gen).to(torch.bfloat16)
    packed, scales = nm.quantize_mxfp4(x, had_size)
    y = ref_rotate(x, had_size)
    ref_scales, ref_codes = ref_mx_quantize(y.astype(np.float32))
    assert (scales.numpy() != ref_scales).mean() <= 1e-3
    assert (module_codes(packed) != ref_codes).mean() <= 1e-3
    # Each value is within half a grid step of E2M1 at its block's scale, or saturated at 6 X.
    deq = nm.dequantize_mxfp4(packed, scales).double().numpy().reshape(64, -1, 32)
    X = 2.0 ** (scales.numpy().astype(np.float64) - 127.0)[..., None]
    yb = y.reshape(64, -1, 32)
    bound = np.where(np.abs(yb) <= 6 * X, np.where(np.abs(yb) < 2 * X, 0.25, 1.0) * X, np.inf)
    assert np.all((np.abs(deq - yb) <= bound * (1 + 1e-6)) | (np.abs(deq) == 6 * X))


def test_block_max_lands_in_four_to_eight(gen):
    """The OCP rule puts a block's largest magnitude in [4, 8) times its scale: never more than
    one binade above E2M1's largest normal, and saturated to 6 above it."""
    x = fresh_rows(gen)[:, 64:].float()
    _, scales = nm.quantize_mxfp4(x)
    amax = x.reshape(x.shape[0], -1, 32).abs().amax(-1).double()
    ratio = amax / 2.0 ** (scales.double() - 127)
    assert ((ratio >= 4) & (ratio < 8)).all()


def test_ties_and_saturation():
    """Midpoints between E2M1 values go to the even code; above 6 X everything is 6 X."""
    block = torch.tensor([4.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.9] + [0.0] * 23)
    packed, scales = nm.quantize_mxfp4(block[None])
    assert scales.item() == 127  # amax 7.9: floor(log2) = 2, scale 2**0
    values = nm.dequantize_mxfp4(packed, scales)[0, :9].tolist()
    assert values == [4.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0]


@pytest.mark.parametrize(
    "K, had, message",
    [
        (256, 16, "had_size=16 is not an MXFP4 rotation"),
        (48, None, "K=48 is not a multiple of 32"),
        (96, 64, "K=96 is not a multiple of had_size=64"),
    ],
)
def test_bad_input_is_one_line(K, had, message):
    with pytest.raises(ValueError, match=message) as error:
        nm.quantize_mxfp4(torch.zeros(2, K), had)
    assert "\n" not in str(error.value)


def test_unknown_format_is_one_line():
    with pytest.raises(ValueError, match="format 'mxfp8' is unknown; use one of nvfp4, mxfp4"):
        nm.fake_quantize(torch.zeros(1, 32), None, "mxfp8")


def test_swizzle_needs_four_scale_columns():
    nm.check_shape(128, 32, swizzle=True, fmt="mxfp4")
    with pytest.raises(ValueError, match="K=192 is not a multiple of 128"):
        nm.check_shape(192, 32, swizzle=True, fmt="mxfp4")
