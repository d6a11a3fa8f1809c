"""Per-model forward-pass times: sums of count x GEMM time against hand-computed totals."""

import math

import pandas as pd

from nvfp4bench.forward import forward_pass_times

SHAPES = pd.DataFrame(
    {
        "model": ["m"] * 3,
        "tp": [1] * 3,
        "layer": ["qkv_proj", "o_proj", "experts.down_proj"],
        "N": [64, 32, 32],
        "K": [32, 32, 16],
        "count": [2, 2, 6],  # 2 decoder layers; 2 MoE layers x top-3 experts
    }
)


def bench_row(N, K, M, provider, had, ms, status="ok", timing="cudagraph-warm-l2"):
    return dict(N=N, K=K, M=M, provider=provider, had_size=had, ms_median=ms, status=status,
                timing=timing)  # fmt: skip


def test_totals_and_speedups_by_hand():
    rows = []
    for M, scale in ((1, 1.0), (8, 3.0)):
        for (N, K), ms in {(64, 32): 0.5, (32, 32): 0.25, (32, 16): 0.125}.items():
            rows.append(bench_row(N, K, M, "torch-bf16", None, ms * scale))
            rows.append(bench_row(N, K, M, "nvfp4-cuda-noquant", None, ms * scale / 4))
            for had, extra in ((16, 0.0), (32, 0.01)):
                rows.append(bench_row(N, K, M, "nvfp4-cuda", had, ms * scale / 2 + extra))
    out = forward_pass_times(SHAPES, pd.DataFrame(rows)).set_index(["provider", "had_size", "M"])
    bf16_m1 = 2 * 0.5 + 2 * 0.25 + 6 * 0.125  # 2.25 ms
    assert math.isclose(out.loc[("torch-bf16", pd.NA, 1), "linear_ms"], bf16_m1)
    assert math.isclose(out.loc[("torch-bf16", pd.NA, 8), "linear_ms"], 3 * bf16_m1)
    assert math.isclose(out.loc[("nvfp4-cuda-noquant", pd.NA, 8), "speedup_vs_bf16"], 4.0)
    assert math.isclose(out.loc[("nvfp4-cuda", 16, 1), "speedup_vs_bf16"], 2.0)
    had32 = bf16_m1 / 2 + 10 * 0.01  # ten GEMM launches, each 0.01 ms slower
    assert math.isclose(out.loc[("nvfp4-cuda", 32, 1), "linear_ms"], had32)
    assert (out["layers"] == 3).all() and (out["gemms"] == 10).all()
    # one row per had-independent provider and M, one per had size for the others
    assert len(out) == 2 * (1 + 1 + 2)


def test_a_model_with_an_untimed_layer_gets_no_total():
    rows = [
        bench_row(64, 32, 1, "torch-bf16", None, 0.5),
        bench_row(32, 32, 1, "torch-bf16", None, 0.25),
        bench_row(32, 16, 1, "torch-bf16", None, 0.125),
        bench_row(64, 32, 1, "nvfp4-cuda-noquant", None, 0.1),
        bench_row(32, 32, 1, "nvfp4-cuda-noquant", None, 0.1),
        bench_row(32, 16, 1, "nvfp4-cuda-noquant", None, None, status="skipped"),
    ]
    out = forward_pass_times(SHAPES, pd.DataFrame(rows))
    assert out["provider"].tolist() == ["torch-bf16"]
    assert out["speedup_vs_bf16"].tolist() == [1.0]


def test_warm_and_cold_rows_are_summed_apart_each_against_its_own_baseline():
    rows = []
    for timing, scale in (("cudagraph-warm-l2", 1.0), ("events-cold-l2", 1.5)):
        for (N, K), ms in {(64, 32): 0.5, (32, 32): 0.25, (32, 16): 0.125}.items():
            rows.append(bench_row(N, K, 1, "torch-bf16", None, ms * scale, timing=timing))
            cold_gain = 1.2 if timing == "events-cold-l2" else 1.0
            ms_q = ms * scale / 2 / cold_gain
            rows.append(bench_row(N, K, 1, "nvfp4-cuda-noquant", None, ms_q, timing=timing))
    out = forward_pass_times(SHAPES, pd.DataFrame(rows)).set_index(["provider", "timing"])
    bf16 = 2 * 0.5 + 2 * 0.25 + 6 * 0.125
    assert math.isclose(out.loc[("torch-bf16", "cudagraph-warm-l2"), "linear_ms"], bf16)
    assert math.isclose(out.loc[("torch-bf16", "events-cold-l2"), "linear_ms"], 1.5 * bf16)
    assert math.isclose(out.loc[("nvfp4-cuda-noquant", "cudagraph-warm-l2"), "speedup_vs_bf16"], 2)
    assert math.isclose(out.loc[("nvfp4-cuda-noquant", "events-cold-l2"), "speedup_vs_bf16"], 2.4)
