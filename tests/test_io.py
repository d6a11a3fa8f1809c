"""Bench TSVs of every layout the pipeline wrote still read, with the newer columns filled in."""

from pathlib import Path

import pandas as pd
import pytest

from nvfp4bench import io, plots

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference-h100"


def test_a_tsv_without_the_gpu_column_reads_with_it_empty(tmp_path):
    row = dict.fromkeys(io.BENCH_COLUMNS, "")
    row.update(N=64, K=64, M=1, provider="torch-bf16", status="ok", timing="cpu-wall",
               stopping="fixed", ms_median=1.0)  # fmt: skip
    old = pd.DataFrame([row]).drop(columns="gpu")
    io.write_tsv(old, tmp_path / "n64_k64.tsv")
    frame = io.read_bench(tmp_path / "n64_k64.tsv")
    assert frame["gpu"].tolist() == [""]
    assert list(frame.columns[: len(io.BENCH_COLUMNS) - 1]) == io.BENCH_COLUMNS[:-1]


def test_a_tsv_missing_a_core_column_is_refused(tmp_path):
    row = dict.fromkeys(io.BENCH_COLUMNS, "")
    pd.DataFrame([row]).drop(columns=["gpu", "ms_median"]).to_csv(
        tmp_path / "bad.tsv", sep="\t", index=False
    )
    with pytest.raises(ValueError, match=r"missing columns \['ms_median'\]"):
        io.read_bench(tmp_path / "bad.tsv")


@pytest.mark.parametrize("folder", [REFERENCE, REFERENCE / "2026-11-25"])
def test_published_results_in_older_layouts_still_summarize(folder):
    bench_tsvs = sorted((folder / "bench").glob("n*_k*.tsv"))
    assert bench_tsvs
    bench = pd.concat([io.read_bench(p) for p in bench_tsvs], ignore_index=True)
    assert (bench["gpu"] == "").all()
    accuracy = pd.concat(
        [io.read_tsv(p) for p in sorted((folder / "accuracy").glob("*.tsv"))], ignore_index=True
    )
    summary = plots.summary_table(bench, accuracy, io.read_tsv(folder / "shapes.tsv"))
    assert len(summary) == len(bench)
    ok = summary[(summary["status"] == "ok") & (summary["provider"] != "torch-bf16")]
    assert ok["speedup_vs_bf16"].notna().all()
