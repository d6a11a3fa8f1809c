"""What NVFP4 buys a whole model: the time of all linear layers of one forward pass, per provider.

For each (model, TP size, batch size M, provider, had size) the time is the sum over the model's
linear layers of the layer's GEMM time at M times its ``count`` (``shapes.LayerShape``: once per
decoder layer; routed experts top-k times per MoE layer, since each token visits top-k experts,
which is exact at M = 1 and an upper bound of the expert work for larger M where the tokens
spread over the experts). Providers that do not depend on the had size count at every had size.
A total is only reported where every layer of the model was timed (status ok).
"""

from __future__ import annotations

import pandas as pd

from .providers import PROVIDERS, baseline_name

NO_HAD = -1
COLUMNS = [
    "model",
    "tp",
    "M",
    "provider",
    "had_size",
    "timing",
    "linear_ms",
    "speedup_vs_bf16",
    "layers",
    "gemms",
]


def _uses_had_size(provider: str) -> bool:
    return PROVIDERS[provider].uses_had_size if provider in PROVIDERS else True


def forward_pass_times(shapes: pd.DataFrame, bench: pd.DataFrame) -> pd.DataFrame:
    """shapes: columns model, tp, layer, N, K, count (one model's tables); bench: bench TSV rows.

    One row per (model, tp, M, provider, had_size, timing) with every layer timed: ``linear_ms``
    (the sum of count x median time), ``speedup_vs_bf16`` (the baseline provider's sum at the
    same model, tp, M and timing over this one) and ``layers`` / ``gemms`` (distinct layers and
    GEMM launches summed)."""
    columns = ["N", "K", "M", "provider", "had_size", "timing", "ms_median"]
    ok = bench[bench["status"] == "ok"][columns]
    # Had-independent rows (BF16, the noquant GEMMs) stand for every had size; -1: "none timed".
    had = ok["had_size"].astype("Int64")
    had_sizes = sorted(int(h) for h in had.dropna().unique()) or [NO_HAD]
    independent = ok[had.isna()]
    spread = [independent.assign(had_size=h) for h in had_sizes]
    rows = pd.concat([ok[had.notna()], *spread], ignore_index=True)
    rows["had_size"] = rows["had_size"].astype("int64")
    rows["uses_had"] = rows["provider"].map(_uses_had_size)
    merged = shapes.merge(rows, on=["N", "K"], how="inner")
    merged["weighted_ms"] = merged["count"] * merged["ms_median"]
    # Rows timed warm and cold (timing method both) are summed apart.
    keys = ["model", "tp", "M", "provider", "had_size", "timing"]
    totals = (
        merged.groupby(keys)
        .agg(
            linear_ms=("weighted_ms", "sum"),
            layers=("layer", "nunique"),
            gemms=("count", "sum"),
            uses_had=("uses_had", "first"),
        )
        .reset_index()
    )
    n_layers = shapes.groupby(["model", "tp"])["layer"].nunique().rename("n_layers")
    totals = totals.join(n_layers, on=["model", "tp"])
    totals = totals[totals["layers"] == totals["n_layers"]]
    same = ["model", "tp", "M", "had_size", "timing"]
    baseline = totals[totals["provider"] == baseline_name()].set_index(same)
    totals = totals.join(baseline["linear_ms"].rename("base_ms"), on=same)
    totals["speedup_vs_bf16"] = totals["base_ms"] / totals["linear_ms"]
    # Had-independent providers were spread over every had size to meet the others: keep one row.
    totals["had_size"] = totals["had_size"].astype("Int64")
    totals.loc[~totals["uses_had"].astype(bool) | (totals["had_size"] == NO_HAD), "had_size"] = (
        pd.NA
    )
    totals = totals.drop_duplicates(subset=keys)
    return (
        totals[COLUMNS]
        .sort_values(["model", "tp", "provider", "had_size", "M"])
        .reset_index(drop=True)
    )
