"""nvfp4bench-compare: labels on constructed rows, and the structure of a real CPU pair."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pipeline_helpers import make_workdir, small_config, snakemake, tiny_llama

from nvfp4bench import io
from nvfp4bench.compare import COLUMNS, LABELS, compare, main, read_results


def row(N, K, provider, had, M, status="ok", median=None, p20=None, p80=None, reason="", **kw):
    values = dict.fromkeys(io.BENCH_COLUMNS, None)
    values.update(N=N, K=K, M=M, provider=provider, had_size=had, status=status, reason=reason)
    values.update(timing="cudagraph-warm-l2", gpu_throttle="")
    if median is not None:
        values.update(ms_median=median, ms_p20=p20, ms_p80=p80)
    values.update(kw)
    return values


def write_side(folder: Path, rows: list[dict], env: dict | None = None) -> Path:
    frame = pd.DataFrame(rows, columns=io.BENCH_COLUMNS)
    for (N, K), shape in frame.groupby(["N", "K"]):
        io.write_tsv(shape, folder / "bench" / f"n{N}_k{K}.tsv")
        if env is not None:
            io.write_json(env, folder / "bench" / f"n{N}_k{K}.env.json")
    return folder


# (case, A row, B row): B is compared with A. Medians and p20..p80 intervals in ms.
CASES = {
    "same, intervals overlap": (("b16", None, 1), (1.00, 0.95, 1.05), (1.03, 0.98, 1.10)),
    "same, within threshold": (("b16", None, 2), (1.000, 0.999, 1.001), (1.005, 1.004, 1.006)),
    "faster": (("b16", None, 4), (1.00, 0.99, 1.01), (0.80, 0.79, 0.81)),
    "slower": (("b16", None, 8), (1.00, 0.99, 1.01), (1.25, 1.24, 1.26)),
    # the same provider and M, but had 16 and had 32 are different rows
    "had 16 faster": (("fp4", 16, 1), (2.00, 1.98, 2.02), (1.00, 0.99, 1.01)),
    "had 32 slower": (("fp4", 32, 1), (1.00, 0.99, 1.01), (2.00, 1.98, 2.02)),
}
EXPECTED = {
    ("b16", None, 1): "same",
    ("b16", None, 2): "same",
    ("b16", None, 4): "faster",
    ("b16", None, 8): "slower",
    ("fp4", 16, 1): "faster",
    ("fp4", 32, 1): "slower",
    ("b16", None, 16): "not_ok_b",
    ("b16", None, 32): "not_ok_a",
    ("fp4", 16, 2): "not_ok_both",
    ("b16", None, 64): "only_a",
    ("b16", None, 128): "only_b",
}


@pytest.fixture
def sides(tmp_path):
    a_rows, b_rows = [], []
    for (provider, had, M), a, b in CASES.values():
        a_rows.append(row(64, 32, provider, had, M, median=a[0], p20=a[1], p80=a[2]))
        b_rows.append(row(64, 32, provider, had, M, median=b[0], p20=b[1], p80=b[2]))
    ok = dict(median=1.0, p20=0.99, p80=1.01)
    a_rows += [
        row(64, 32, "b16", None, 16, **ok),
        row(64, 32, "b16", None, 32, status="failed", reason="out of memory: CUDA"),
        row(64, 32, "fp4", 16, 2, status="skipped", reason="needs compute capability 10.x"),
        row(64, 32, "b16", None, 64, **ok),
    ]
    b_rows += [
        row(64, 32, "b16", None, 16, status="failed", reason="wrong result (rel err 0.1 > 0.01)"),
        row(64, 32, "b16", None, 32, **ok),
        row(64, 32, "fp4", 16, 2, status="skipped", reason="needs compute capability 10.x"),
        row(64, 32, "b16", None, 128, **ok),
    ]
    # A second shape, to check that rows of different shapes are kept apart.
    a_rows.append(row(128, 64, "b16", None, 1, median=1.0, p20=0.99, p80=1.01))
    b_rows.append(
        row(128, 64, "b16", None, 1, median=3.0, p20=2.9, p80=3.1, gpu_throttle="hw_slowdown")
    )
    env_a = {
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "git_commit": "a" * 40,
        "torch": "2.8.0",
        "date": "2026-01-01T00:00:00+00:00",
    }
    env_b = dict(env_a, gpu_name="NVIDIA B200", compute_capability="10.0", git_commit="b" * 40)
    return write_side(tmp_path / "A", a_rows, env_a), write_side(tmp_path / "B", b_rows, env_b)


def labels(table: pd.DataFrame) -> dict:
    return {
        (r.provider, None if pd.isna(r.had_size) else int(r.had_size), r.M): r.label
        for r in table[table["N"] == 64].itertuples()
    }


def test_labels_of_constructed_cases(sides):
    table = compare(read_results(sides[0]), read_results(sides[1]), threshold_pct=1.0)
    assert list(table.columns) == COLUMNS
    assert labels(table) == EXPECTED
    other = table[table["N"] == 128].iloc[0]
    assert other.label == "slower" and other.delta_pct == pytest.approx(200.0)
    assert "GPU slowdown in B: hw_slowdown" in other.note
    faster = table[(table["provider"] == "b16") & (table["M"] == 4)].iloc[0]
    assert faster.delta_pct == pytest.approx(-20.0)
    failed = table[table["label"] == "not_ok_b"].iloc[0]
    assert failed.reason_b.startswith("wrong result") and "B failed: wrong result" in failed.note
    assert table.loc[table["label"].str.startswith(("not_ok", "only")), "delta_pct"].isna().all()


def test_threshold_moves_the_same_boundary(sides):
    a, b = read_results(sides[0]), read_results(sides[1])
    strict = labels(compare(a, b, threshold_pct=0.0))
    assert strict[("b16", None, 2)] == "slower"  # 0.5 % apart, intervals disjoint
    assert strict[("b16", None, 1)] == "same"  # overlapping intervals stay same
    loose = labels(compare(a, b, threshold_pct=30.0))
    assert loose[("b16", None, 4)] == "same" and loose[("b16", None, 8)] == "same"
    assert loose[("fp4", 16, 1)] == "faster"  # 50 % apart


def test_cli_prints_environments_table_and_counts_and_writes_the_tsv(sides, tmp_path, capsys):
    out = tmp_path / "cmp" / "comparison.tsv"
    assert main([str(sides[0]), str(sides[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    a_line, b_line = printed.splitlines()[:2]
    assert "NVIDIA H100 80GB HBM3 (cc 9.0)" in a_line and "a" * 40 in a_line
    assert "NVIDIA B200 (cc 10.0)" in b_line and "b" * 40 in b_line
    counts = {label: list(EXPECTED.values()).count(label) for label in LABELS}
    counts["slower"] += 1  # the second shape
    assert "summary (B vs A): " + ", ".join(f"{k} {v}" for k, v in counts.items()) in printed
    written = io.read_tsv(out)
    assert list(written.columns) == COLUMNS and len(written) == len(EXPECTED) + 1
    assert written["label"].value_counts().to_dict() == {k: v for k, v in counts.items() if v}
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temp file
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_cli_refuses_a_folder_without_bench_tsvs(sides, tmp_path, capsys):
    assert main([str(sides[0]), str(tmp_path / "nothing")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no bench TSVs" in error and "nothing" in error


def test_identical_sides_are_all_same_or_not_ok_both(sides):
    a = read_results(sides[0])
    table = compare(a, a)
    ok = a["status"] == "ok"
    assert (table["label"] == "same").sum() == ok.sum()
    assert (table["label"] == "not_ok_both").sum() == (~ok).sum()


@pytest.mark.slow
def test_two_real_cpu_runs_compare_by_structure(tmp_path):
    """Two CPU runs of the same bench jobs (noisy machine: labels are not asserted)."""
    work = make_workdir(tmp_path)
    model = tiny_llama(tmp_path / "models" / "tiny-a", hidden=256, intermediate=512)
    config = small_config([model], providers=["torch-bf16", "nvfp4"], had_sizes=[16])
    targets = ["results/cpu/bench/n256_k256.tsv", "results/cpu/bench/n512_k256.tsv"]
    snakemake(work, config, "--cores", "2", *targets)
    shutil.copytree(work / "results" / "cpu", tmp_path / "A")
    snakemake(work, config, "--cores", "2", "--forceall", *targets)
    out = tmp_path / "comparison.tsv"
    script = Path(sys.executable).parent / "nvfp4bench-compare"  # the installed entry point
    result = subprocess.run(
        [str(script), str(tmp_path / "A"), str(work / "results" / "cpu"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "device cpu" in result.stdout.splitlines()[0]
    table = io.read_tsv(out)
    # 2 shapes x 2 M x (bf16 + nvfp4 at had 16), every row present on both sides
    assert len(table) == 8
    bf16 = table[table["provider"] == "torch-bf16"]
    assert set(bf16["label"]) <= {"same", "faster", "slower"}
    assert (bf16["ms_median_a"] > 0).all() and (bf16["ms_median_b"] > 0).all()
    assert (table.loc[table["provider"] == "nvfp4", "label"] == "not_ok_both").all()


def test_runs_timed_warm_and_cold_compare_row_by_method():
    def both(warm, cold):
        return [
            row(64, 64, "b16", None, 1, median=warm, p20=warm, p80=warm),
            row(64, 64, "b16", None, 1, median=cold, p20=cold, p80=cold, timing="events-cold-l2"),
        ]

    out = compare(pd.DataFrame(both(1.0, 1.5)), pd.DataFrame(both(1.0, 1.2)))
    labels = dict(zip(out["timing_a"], out["label"], strict=True))
    assert labels == {"cudagraph-warm-l2": "same", "events-cold-l2": "faster"}
    # against a warm-only run, the cold row has no partner
    out = compare(pd.DataFrame(both(1.0, 1.5)), pd.DataFrame(both(1.0, 1.5)[:1]))
    assert sorted(out["label"]) == ["only_a", "same"]
