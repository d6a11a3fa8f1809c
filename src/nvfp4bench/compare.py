"""Compare two result folders row by row, like nvbench's compare script.

    nvfp4bench-compare results/nvidia-h100-80gb-hbm3 ../other/results/nvidia-h100-80gb-hbm3

A is the reference, B the run compared with it. Rows are matched on (N, K, provider, had_size, M)
and labelled:

* ``same``: both ok, and the medians differ by no more than the measured spread (the p20..p80
  time intervals of A and B overlap) or by less than ``--threshold-pct`` percent;
* ``faster`` / ``slower``: both ok, B's median time lower / higher than A's, beyond that;
* ``not_ok_a`` / ``not_ok_b`` / ``not_ok_both``: failed or skipped on that side (reasons kept);
* ``only_a`` / ``only_b``: the row exists on one side only (another config or shape set).

Rows whose GPU reported a slowdown (``gpu_throttle``) or whose timing method differs are noted.
Only the TSV and JSON files are read (bench/n*_k*.tsv, bench/n*_k*.env.json), never a pickle.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from . import io

KEY = ["N", "K", "provider", "had_size", "M"]
LABELS = ("faster", "slower", "same", "not_ok_a", "not_ok_b", "not_ok_both", "only_a", "only_b")
_SIDE_COLUMNS = ["status", "reason", "ms_median", "ms_p20", "ms_p80", "timing", "gpu_throttle"]
COLUMNS = [
    *KEY,
    "label",
    "delta_pct",
    "ms_median_a",
    "ms_median_b",
    "ms_p20_a",
    "ms_p80_a",
    "ms_p20_b",
    "ms_p80_b",
    "status_a",
    "status_b",
    "reason_a",
    "reason_b",
    "timing_a",
    "timing_b",
    "gpu_throttle_a",
    "gpu_throttle_b",
    "note",
]
DEFAULT_THRESHOLD_PCT = 1.0


class CompareError(ValueError):
    pass


def bench_dir(results: str | Path) -> Path:
    """The folder holding the bench TSVs: RESULTS/bench, or RESULTS itself if it holds them."""
    results = Path(results)
    for folder in (results / "bench", results):
        if folder.is_dir() and any(folder.glob("n*_k*.tsv")):
            return folder
    raise CompareError(f"{results}: no bench TSVs (expected {results / 'bench'}/n<N>_k<K>.tsv)")


def read_results(results: str | Path) -> pd.DataFrame:
    """Every bench row of a results folder, one frame."""
    frames = [io.read_bench(path) for path in sorted(bench_dir(results).glob("n*_k*.tsv"))]
    frame = pd.concat(frames, ignore_index=True)
    duplicated = frame.duplicated([*KEY, "timing"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise CompareError(f"{results}: row {tuple(row[KEY])} appears more than once")
    return frame


def environments(results: str | Path) -> list[dict]:
    """The env.json records next to the bench TSVs (one per shape)."""
    records = []
    for path in sorted(bench_dir(results).glob("n*_k*.env.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            records.append({"error": f"{path.name}: {error}"})
    return records


def describe_environment(records: list[dict]) -> str:
    """One line: what the side ran on (GPU or CPU), the commit, software and dates."""
    if not records:
        return "no env.json records"

    def values(get) -> str:
        found = sorted({str(v) for v in (get(r) for r in records) if v not in (None, "")})
        return " / ".join(found) if found else "?"

    def device(record: dict) -> str | None:
        if record.get("gpu_name"):
            return f"{record['gpu_name']} (cc {record.get('compute_capability', '?')})"
        if record.get("device"):
            return f"{record['device']} ({record.get('cpu', '?')})"
        return None

    throttled = sum(
        bool((record.get(state) or {}).get("throttle_reasons"))
        for record in records
        for state in ("gpu_state_before", "gpu_state_after")
    )
    dates = sorted(r["date"] for r in records if r.get("date"))
    parts = [
        f"device {values(device)}",
        f"commit {values(lambda r: r.get('git_commit'))}",
        f"torch {values(lambda r: r.get('torch'))}",
        f"driver {values(lambda r: r.get('driver'))}",
        f"timing {values(lambda r: r.get('timing_method'))}",
        f"dates {dates[0]} .. {dates[-1]}" if dates else "dates ?",
    ]
    if throttled:
        parts.append(f"GPU slowdown reported in {throttled} before/after states")
    return "; ".join(parts)


def compare(a: pd.DataFrame, b: pd.DataFrame, threshold_pct: float = DEFAULT_THRESHOLD_PCT):
    """One row per key present in A or B, labelled (see the module docstring)."""
    if threshold_pct < 0:
        raise CompareError(f"threshold_pct must be >= 0, got {threshold_pct}")

    # A side timed warm and cold (timing method both) has two rows per key: match by method too.
    by_method = a.duplicated(KEY).any() or b.duplicated(KEY).any()

    def side(frame: pd.DataFrame, suffix: str) -> pd.DataFrame:
        frame = frame[KEY + _SIDE_COLUMNS].copy()
        # A key column with missing values would not match itself reliably: -1 = no had size.
        frame["had_size"] = frame["had_size"].astype("Int64").fillna(-1).astype("int64")
        frame["method"] = frame["timing"] if by_method else ""
        return frame.rename(columns={c: f"{c}_{suffix}" for c in _SIDE_COLUMNS})

    merged = side(a, "a").merge(side(b, "b"), on=[*KEY, "method"], how="outer", indicator=True)
    ok_a = merged["status_a"] == "ok"
    ok_b = merged["status_b"] == "ok"
    median_a, median_b = merged["ms_median_a"], merged["ms_median_b"]
    merged["delta_pct"] = (median_b / median_a - 1.0) * 100.0
    overlap = (merged["ms_p20_a"] <= merged["ms_p80_b"]) & (
        merged["ms_p20_b"] <= merged["ms_p80_a"]
    )
    same = overlap | (merged["delta_pct"].abs() < threshold_pct) | (median_a == median_b)

    label = pd.Series("same", index=merged.index, dtype=object)
    label[~same & (median_b < median_a)] = "faster"
    label[~same & (median_b > median_a)] = "slower"
    label[~ok_a & ok_b] = "not_ok_a"
    label[ok_a & ~ok_b] = "not_ok_b"
    label[~ok_a & ~ok_b] = "not_ok_both"
    label[merged["_merge"] == "left_only"] = "only_a"
    label[merged["_merge"] == "right_only"] = "only_b"
    merged["label"] = label
    merged.loc[~(ok_a & ok_b), "delta_pct"] = float("nan")

    notes = []
    for row in merged.itertuples():
        note = []
        for suffix in ("a", "b"):
            status = getattr(row, f"status_{suffix}")
            if isinstance(status, str) and status != "ok":
                reason = str(getattr(row, f"reason_{suffix}") or "")
                reason = reason if len(reason) <= 80 else reason[:77] + "..."
                note.append(f"{suffix.upper()} {status}: {reason}" if reason else status)
        if row.label not in ("only_a", "only_b") and row.timing_a != row.timing_b:
            note.append(f"timing differs ({row.timing_a} vs {row.timing_b})")
        for suffix in ("a", "b"):
            throttle = getattr(row, f"gpu_throttle_{suffix}")
            if isinstance(throttle, str) and throttle:
                note.append(f"GPU slowdown in {suffix.upper()}: {throttle}")
        notes.append("; ".join(note))
    merged["note"] = notes

    merged["had_size"] = merged["had_size"].astype("Int64").replace(-1, pd.NA)
    for column in ("reason_a", "reason_b", "gpu_throttle_a", "gpu_throttle_b"):
        merged[column] = merged[column].fillna("")
    merged = merged.sort_values(KEY, na_position="first", ignore_index=True)
    return merged[COLUMNS]


def summary_counts(table: pd.DataFrame) -> dict[str, int]:
    counts = table["label"].value_counts()
    return {label: int(counts.get(label, 0)) for label in LABELS}


def format_table(table: pd.DataFrame) -> str:
    def ms(value) -> str:
        return "" if pd.isna(value) else f"{value:.4g}"

    shown = pd.DataFrame(
        {
            "N": table["N"],
            "K": table["K"],
            "provider": table["provider"],
            "had": table["had_size"].astype(object).where(table["had_size"].notna(), "-"),
            "M": table["M"],
            "A ms": table["ms_median_a"].map(ms),
            "B ms": table["ms_median_b"].map(ms),
            "delta %": table["delta_pct"].map(lambda v: "" if pd.isna(v) else f"{v:+.1f}"),
            "label": table["label"],
            "note": table["note"],
        }
    )
    return shown.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nvfp4bench-compare",
        description="Compare the bench TSVs of two result folders (A = reference, B = compared).",
    )
    parser.add_argument("results_a", help="results folder A (holding bench/), e.g. results/cpu")
    parser.add_argument("results_b", help="results folder B")
    parser.add_argument("--out", help="write the comparison to this TSV")
    parser.add_argument(
        "--threshold-pct",
        type=float,
        default=DEFAULT_THRESHOLD_PCT,
        help="medians closer than this (in %%) are 'same' even if the p20..p80 intervals do not "
        f"overlap (default {DEFAULT_THRESHOLD_PCT:g})",
    )
    args = parser.parse_args(argv)
    try:
        a = read_results(args.results_a)
        b = read_results(args.results_b)
        table = compare(a, b, args.threshold_pct)
    except (CompareError, ValueError, OSError) as error:
        print(f"nvfp4bench-compare: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(f"A: {args.results_a}: {describe_environment(environments(args.results_a))}")
    print(f"B: {args.results_b}: {describe_environment(environments(args.results_b))}")
    print()
    print(format_table(table))
    print()
    counts = summary_counts(table)
    print("summary (B vs A): " + ", ".join(f"{label} {n}" for label, n in counts.items()))
    noted = table["note"].str.len() > 0
    if noted.any():
        print(f"{int(noted.sum())} rows have a note (GPU slowdown or different timing): see above")
    if args.out:
        io.write_tsv(table, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
