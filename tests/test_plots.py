"""What the figures say about how their numbers were measured."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

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
