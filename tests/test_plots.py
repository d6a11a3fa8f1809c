"""What the figures say about how their numbers were measured."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nvfp4bench import plots  # noqa: E402
from nvfp4bench.io import BENCH_COLUMNS  # noqa: E402


def bench_rows(stopping: str) -> pd.DataFrame:
    rows = [
        dict.fromkeys(BENCH_COLUMNS)
        | dict(N=64, K=64, M=M, provider="torch-bf16", status="ok", reason="", kernel="",
               gpu_throttle="", timing="cudagraph-warm-l2", stopping=stopping, ms_median=t,
               ms_p20=t, ms_p80=t, tflops_median=1 / t, tflops_p20=1 / t, tflops_p80=1 / t)
        for M, t in ((1, 1.0), (16, 1.5))
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=BENCH_COLUMNS)
    frame["had_size"] = frame["had_size"].astype("Int64")
    return frame


def test_throughput_figure_names_the_timing_method_and_stopping_rule():
    for stopping in ("fixed", "adaptive"):
        figure = plots.throughput_figure(bench_rows(stopping), "tiny:o_proj")
        title = figure._suptitle.get_text()
        assert f"timing: cudagraph-warm-l2, {stopping} stopping" in title, title
        matplotlib.pyplot.close(figure)


def test_no_timing_label_without_timed_rows():
    frame = bench_rows("fixed").assign(status="skipped")
    assert plots.timing_label(frame) == ""


def summary_rows(*rows) -> pd.DataFrame:
    """Summary rows (provider, had_size, M, ms) of two shapes, all timed."""
    frame = pd.concat(
        [
            bench_rows("fixed").iloc[:0],
            pd.DataFrame(
                [
                    dict.fromkeys(BENCH_COLUMNS)
                    | dict(N=N, K=64, M=M, provider=p, had_size=had, status="ok", reason="",
                           timing="cpu-wall", stopping="fixed", ms_median=ms,
                           tflops_median=2 * M * N * 64 / ms / 1e9)
                    for N in (64, 128)
                    for p, had, M, ms in rows
                ]
            ),
        ]
    )  # fmt: skip
    frame["had_size"] = frame["had_size"].astype("Int64")
    frame = plots.with_speedup(frame)
    frame["users"] = frame["N"].map({64: "org/tiny:o_proj", 128: "org/tiny:qkv_proj"})
    return frame


def panels(figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible() and ax.axison]


def test_throughput_figure_has_a_panel_per_timed_hadamard_size_else_one():
    only_bf16 = bench_rows("fixed")
    skipped = only_bf16.assign(provider="nvfp4", had_size=16, status="skipped")
    skipped["had_size"] = skipped["had_size"].astype("Int64")
    figure = plots.throughput_figure(pd.concat([only_bf16, skipped]), "tiny:o_proj")
    assert len(panels(figure)) == 1
    matplotlib.pyplot.close(figure)
    timed = [only_bf16.assign(provider="nvfp4", had_size=h) for h in (16, 32)]
    rows = pd.concat([only_bf16, *timed])
    rows["had_size"] = rows["had_size"].astype("Int64")
    figure = plots.throughput_figure(rows, "tiny:o_proj")
    assert [ax.get_title() for ax in panels(figure)] == ["Hadamard 16", "Hadamard 32"]
    matplotlib.pyplot.close(figure)


def test_overview_has_a_line_per_shape_and_a_panel_per_provider_on_shared_axes():
    summary = summary_rows(
        ("torch-bf16", None, 1, 2.0),
        ("torch-bf16", None, 16, 4.0),
        ("nvfp4-cuda", 16, 1, 1.0),
        ("nvfp4-cuda", 16, 16, 2.0),
        ("nvfp4-cuda", 32, 1, 0.5),
        ("nvfp4-cuda", 32, 16, 1.0),
        ("nvfp4-cuda-noquant", None, 1, 0.8),
        ("nvfp4-cuda-noquant", None, 16, 8.0),
    )
    figure = plots.overview_figure(summary)
    axes = panels(figure)
    # had-dependent providers at their smallest had size; the baseline has no panel of its own
    assert [ax.get_title() for ax in axes] == ["nvfp4-cuda (had 16)", "nvfp4-cuda-noquant"]
    assert axes[0].get_ylim() == axes[1].get_ylim()
    lines = {line.get_label(): list(line.get_ydata()) for line in axes[0].get_lines()}
    assert lines["tiny:o_proj (64×64)"] == [2.0, 2.0]  # bf16 time / nvfp4-cuda had-16 time
    assert lines["tiny:qkv_proj (128×64)"] == [2.0, 2.0]
    assert "Speedup over torch-bf16" in figure._suptitle.get_text()
    matplotlib.pyplot.close(figure)


def test_overview_and_heatmap_show_tflops_where_only_the_baseline_ran():
    summary = summary_rows(("torch-bf16", None, 1, 2.0), ("torch-bf16", None, 16, 4.0))
    figure = plots.overview_figure(summary)
    (ax,) = panels(figure)
    assert ax.get_ylabel() == "TFLOP/s" and ax.get_title() == "torch-bf16"
    assert "Only the baseline was timed" in figure._suptitle.get_text()
    matplotlib.pyplot.close(figure)
    figure = plots.heatmap_figure(summary)
    (ax,) = panels(figure)
    assert [t.get_text() for t in ax.texts] == [f"{2 * M * N * 64 / ms / 1e9:.3g}"
                                                for N in (64, 128)
                                                for M, ms in ((1, 2.0), (16, 4.0))]  # fmt: skip
    matplotlib.pyplot.close(figure)


def test_forward_figure_draws_speedups_only_where_another_provider_ran():
    table = pd.DataFrame(
        {"model": "m", "tp": 1, "M": [1, 16], "provider": "torch-bf16", "had_size": pd.NA,
         "timing": "cudagraph-warm-l2", "linear_ms": [1.0, 2.0], "speedup_vs_bf16": 1.0,
         "layers": 4, "gemms": 8}
    )  # fmt: skip
    table["had_size"] = table["had_size"].astype("Int64")
    figure = plots.forward_pass_figure(table, "m")
    assert len(panels(figure)) == 1
    matplotlib.pyplot.close(figure)
    other = table.assign(provider="nvfp4-cuda", had_size=16, speedup_vs_bf16=2.0)
    figure = plots.forward_pass_figure(pd.concat([table, other]), "m")
    assert len(panels(figure)) == 2
    matplotlib.pyplot.close(figure)


def warm_and_cold_rows() -> pd.DataFrame:
    """BF16 and a noquant GEMM at M = 1 and 16, each timed warm and (1.5x / 1.2x slower) cold."""
    frames = []
    for timing, bf16_cold, gemm_cold in (("cudagraph-warm-l2", 1, 1), ("events-cold-l2", 1.5, 1.2)):
        bf16 = bench_rows("fixed").assign(timing=timing)
        bf16["ms_median"] *= bf16_cold
        gemm = bench_rows("fixed").assign(timing=timing, provider="nvfp4-cuda-noquant")
        gemm["ms_median"] *= gemm_cold / 2
        frames += [bf16, gemm]
    return pd.concat(frames, ignore_index=True)


def test_warm_and_cold_rows_are_drawn_apart_and_compared_in_the_summary():
    rows = warm_and_cold_rows()
    figure = plots.throughput_figure(rows, "tiny:o_proj")
    lines = {line.get_label(): line.get_linestyle() for line in figure.axes[0].lines}
    assert lines == {
        "torch-bf16 (warm L2)": "-",
        "torch-bf16 (cold L2)": "--",
        "nvfp4-cuda-noquant (warm L2)": "-",
        "nvfp4-cuda-noquant (cold L2)": "--",
    }
    assert "events-cold-l2, fixed stopping" in figure._suptitle.get_text()
    matplotlib.pyplot.close(figure)
    shapes = pd.DataFrame({"N": [64], "K": [64], "users": ["tiny:o_proj"]})
    accuracy = pd.DataFrame(
        columns=["N", "K", "format", "had_size", "distribution", "err_output", "status"]
    )
    summary = plots.summary_table(rows, accuracy, shapes)
    summary = summary.set_index(["provider", "timing", "M"]).sort_index()
    gemm = summary.loc["nvfp4-cuda-noquant"]
    # each method against its own baseline: 2x warm, 2.5x cold; cold/warm per row
    assert gemm.loc[("cudagraph-warm-l2", 16), "speedup_vs_bf16"] == pytest.approx(2.0)
    assert gemm.loc[("events-cold-l2", 16), "speedup_vs_bf16"] == pytest.approx(2.5)
    assert gemm["cold_over_warm"].tolist() == pytest.approx([1.2] * 4)
    assert summary.loc["torch-bf16", "cold_over_warm"].tolist() == pytest.approx([1.5] * 4)
    variants = set(plots.compared_rows(summary.reset_index())[0]["variant"])
    assert variants == {"nvfp4-cuda-noquant (warm L2)", "nvfp4-cuda-noquant (cold L2)"}


def test_one_method_adds_no_comparison_column():
    shapes = pd.DataFrame({"N": [64], "K": [64], "users": ["tiny:o_proj"]})
    accuracy = pd.DataFrame(
        columns=["N", "K", "format", "had_size", "distribution", "err_output", "status"]
    )
    summary = plots.summary_table(bench_rows("fixed"), accuracy, shapes)
    assert "cold_over_warm" not in summary.columns
