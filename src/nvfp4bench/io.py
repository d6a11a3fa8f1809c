"""Result files: TSV and JSON written atomically (temp file + rename), TSV schemas."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

# One row per (provider, had_size, M). had_size is empty for providers that do not depend on it
# (timed once per M). tflops_p20/p80 are the 20th/80th percentiles of throughput, i.e. computed
# from the 80th/20th percentile times. `gpu`: the GPU that ran the row (name, index, UUID).
BENCH_COLUMNS = [
    "N",
    "K",
    "M",
    "provider",
    "had_size",
    "status",
    "reason",
    "ms_median",
    "ms_p20",
    "ms_p80",
    "tflops_median",
    "tflops_p20",
    "tflops_p80",
    "timing",
    "stopping",
    "samples",
    "noise",
    "check_rel_err",
    "gpu_throttle",
    "kernel",
    "gpu",
]
STATUSES = ("ok", "skipped", "failed")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    _atomic(path, lambda tmp: frame.to_csv(tmp, sep="\t", index=False))


def write_bytes(data: bytes, path: str | Path) -> None:
    _atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json(record: dict, path: str | Path) -> None:
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n"))


def write_pickle(obj, path: str | Path) -> None:
    """For users only: the pipeline never loads a pickle (they can run code)."""

    def dump(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            pickle.dump(obj, handle)

    _atomic(path, dump)


def write_figure(figure, path: str | Path) -> None:
    _atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def read_tsv(path: str | Path, dtype: dict | None = None) -> pd.DataFrame:
    """Empty fields are missing values; text such as "NA" or "None" stays text."""
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], dtype=dtype)


def read_bench(path: str | Path) -> pd.DataFrame:
    text_columns = ("reason", "gpu_throttle", "provider", "status", "kernel", "stopping", "gpu")
    frame = read_tsv(path, dtype=dict.fromkeys(text_columns, str))
    # TSVs written before these columns existed (all timed with fixed stopping; the GPU of
    # those is only in the shape's env record)
    for column, value in (
        ("kernel", ""),
        ("stopping", "fixed"),
        ("samples", None),
        ("noise", None),
        ("gpu", ""),
    ):
        if column not in frame.columns:
            frame[column] = value
    missing = [c for c in BENCH_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a bench TSV, missing columns {missing}")
    frame["had_size"] = frame["had_size"].astype("Int64")
    for column in ("reason", "gpu_throttle", "kernel", "gpu"):
        frame[column] = frame[column].fillna("")
    return frame
