"""Figures and the summary table, read back from the TSVs only (never from pickles)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # files only; no display on a cluster node

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import io  # noqa: E402

BASELINE = "torch-bf16"


def shape_users(shapes: pd.DataFrame, N: int, K: int) -> str:
    match = shapes[(shapes["N"] == N) & (shapes["K"] == K)]
    return str(match["users"].iloc[0]) if len(match) else ""


def _per_panel(bench: pd.DataFrame, had_sizes: list[int]) -> pd.DataFrame:
    """Rows of had-independent providers (had_size empty) repeated in every had-size panel."""
    fixed = bench[bench["had_size"].isna()]
    repeated = [fixed.assign(panel=had) for had in had_sizes]
    per_had = bench[bench["had_size"].notna()].assign(panel=lambda f: f["had_size"])
    return pd.concat([per_had, *repeated], ignore_index=True)


def _skipped_note(bench: pd.DataFrame) -> str:
    not_ok = bench[bench["status"] != "ok"]
    notes = []
    for (provider, status), rows in not_ok.groupby(["provider", "status"], sort=False):
        notes.append(f"{provider}: {status} x{len(rows)} ({rows['reason'].iloc[0][:90]})")
    return "\n".join(notes)


def timing_label(bench: pd.DataFrame) -> str:
    """How the timed rows were measured, e.g. "timing: cudagraph-warm-l2, fixed stopping"."""
    ok = bench[bench["status"] == "ok"]
    if ok.empty:
        return ""
    pairs = ok[["timing", "stopping"]].fillna("fixed").drop_duplicates()
    return "timing: " + "; ".join(f"{t}, {s} stopping" for t, s in pairs.itertuples(index=False))


def _say_nothing_timed(ax, rows: pd.DataFrame) -> None:
    """In place of a plot: why no NVFP4 provider has a timing on this device."""
    message = "No NVFP4 provider was timed on this device:\n" + _skipped_note(rows)[:600]
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=6, transform=ax.transAxes)


def throughput_figure(bench: pd.DataFrame, users: str):
    N, K = int(bench["N"].iloc[0]), int(bench["K"].iloc[0])
    had_sizes = sorted(int(h) for h in bench["had_size"].dropna().unique()) or [0]
    data = _per_panel(bench, had_sizes)
    ok = data[data["status"] == "ok"]
    providers = list(dict.fromkeys(bench["provider"]))
    palette = dict(zip(providers, sns.color_palette("tab10", len(providers)), strict=True))
    fig, axes = plt.subplots(
        1, len(had_sizes), figsize=(4.2 * len(had_sizes), 4), sharey=True, squeeze=False
    )
    for ax, had in zip(axes[0], had_sizes, strict=True):
        panel = ok[ok["panel"] == had]
        for provider, rows in panel.groupby("provider", sort=False):
            rows = rows.sort_values("M")
            ax.plot(
                rows["M"],
                rows["tflops_median"],
                marker="o",
                ms=3,
                label=provider,
                color=palette[provider],
            )
            ax.fill_between(
                rows["M"],
                rows["tflops_p20"],
                rows["tflops_p80"],
                alpha=0.25,
                color=palette[provider],
            )
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.set_xlabel("batch size M")
        ax.set_title(f"Hadamard {had}" if had else "")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("TFLOP/s (median, band p20-p80)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][-1].legend(handles, labels, loc="best", fontsize=8)
    title = f"BF16 vs NVFP4 GEMMs, N={N} K={K}"
    heading = "\n".join([title, *textwrap.wrap(users, 150), timing_label(bench)]).strip()
    fig.suptitle(heading, fontsize=10, y=1.0 + 0.05 * heading.count("\n"))
    note = _skipped_note(bench)
    if note:
        fig.text(0.01, -0.02, note, fontsize=7, va="top", family="monospace")
    return fig


def accuracy_figure(accuracy: pd.DataFrame, users: str):
    ok = accuracy[accuracy["status"] == "ok"].copy()
    ok["rotation"] = ok["had_size"].map(lambda h: "none" if h == 0 else str(int(h)))
    order = ["none"] + [str(int(h)) for h in sorted(ok["had_size"].unique()) if h != 0]
    long = ok.melt(
        id_vars=["rotation", "distribution"],
        value_vars=["err_output", "err_activation", "err_weight"],
        var_name="error",
        value_name="relative error",
    )
    grid = sns.catplot(
        data=long,
        x="rotation",
        y="relative error",
        hue="distribution",
        col="error",
        kind="point",
        order=order,
        height=3.5,
        aspect=1.0,
        sharey=False,
    )
    grid.set_titles("{col_name}")
    grid.set_xlabels("Hadamard size")
    N, K = int(accuracy["N"].iloc[0]), int(accuracy["K"].iloc[0])
    grid.figure.suptitle(f"NVFP4 W4A4 relative error, N={N} K={K}\n{users}", fontsize=10, y=1.08)
    return grid.figure


def speed_vs_error_figure(bench: pd.DataFrame, accuracy: pd.DataFrame, users: str):
    """Each point a had size: speedup over BF16 at the largest timed M against its output error."""
    points = speed_error_points(bench, accuracy)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    N, K = int(bench["N"].iloc[0]), int(bench["K"].iloc[0])
    ax.set_title(f"Speed vs error, N={N} K={K}\n{users}", fontsize=9)
    ax.set_xlabel("relative output error ||Y_q - Y|| / ||Y||")
    ax.set_ylabel("speedup over torch-bf16")
    if points.empty:
        _say_nothing_timed(ax, bench)
        return fig
    sns.scatterplot(
        data=points,
        x="err_output",
        y="speedup_vs_bf16",
        hue="provider",
        style="distribution",
        s=60,
        ax=ax,
    )
    for _, p in points.iterrows():
        ax.annotate(
            str(int(p["had_size"])),
            (p["err_output"], p["speedup_vs_bf16"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.grid(True, alpha=0.3)
    return fig


def with_speedup(bench: pd.DataFrame) -> pd.DataFrame:
    baseline = bench[(bench["provider"] == BASELINE) & (bench["status"] == "ok")]
    baseline = baseline[["N", "K", "M", "ms_median"]].rename(columns={"ms_median": "bf16_ms"})
    merged = bench.merge(baseline, on=["N", "K", "M"], how="left")
    merged["speedup_vs_bf16"] = merged["bf16_ms"] / merged["ms_median"]
    return merged.drop(columns="bf16_ms")


def speed_error_points(bench: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    timed = with_speedup(bench)
    timed = timed[(timed["status"] == "ok") & timed["had_size"].notna()]
    if timed.empty:
        return pd.DataFrame()
    largest = timed[timed["M"] == timed["M"].max()]
    errors = accuracy[accuracy["status"] == "ok"][["had_size", "distribution", "err_output"]]
    return largest.astype({"had_size": int}).merge(errors, on="had_size")


def shape_outputs(bench_tsv: str, accuracy_tsv: str, shapes_tsv: str, outputs: dict) -> None:
    bench = io.read_bench(bench_tsv)
    accuracy = io.read_tsv(accuracy_tsv)
    users = shape_users(io.read_tsv(shapes_tsv), int(bench["N"].iloc[0]), int(bench["K"].iloc[0]))
    io.write_pickle(bench.assign(users=users), outputs["pickle"])
    for key, figure in (
        ("plot", throughput_figure(bench, users)),
        ("accuracy", accuracy_figure(accuracy, users)),
        ("speed_vs_error", speed_vs_error_figure(bench, accuracy, users)),
    ):
        io.write_figure(figure, outputs[key])
        plt.close(figure)


def summary_table(
    bench: pd.DataFrame, accuracy: pd.DataFrame, shapes: pd.DataFrame
) -> pd.DataFrame:
    """All rows, with speedup over BF16 and each had size's output error per distribution."""
    table = with_speedup(bench).merge(shapes[["N", "K", "users"]], on=["N", "K"], how="left")
    ok = accuracy[accuracy["status"] == "ok"]
    errors = (
        ok.pivot_table(index=["N", "K", "had_size"], columns="distribution", values="err_output")
        .add_prefix("err_output_")
        .reset_index()
    )
    errors.columns.name = None
    errors["had_size"] = errors["had_size"].astype("Int64")
    return table.merge(errors, on=["N", "K", "had_size"], how="left")


def heatmap_figure(summary: pd.DataFrame):
    """Speedup over BF16 for each (shape, M): one panel per NVFP4 provider and had size."""
    data = summary[(summary["provider"] != BASELINE) & summary["speedup_vs_bf16"].notna()].copy()
    if data.empty:
        fig, ax = plt.subplots(figsize=(7, 2.5))
        ax.axis("off")
        _say_nothing_timed(ax, summary)
        return fig
    data["shape"] = data["N"].astype(str) + " x " + data["K"].astype(str)
    data["variant"] = data["provider"] + data["had_size"].map(
        lambda h: "" if pd.isna(h) else f" (had {int(h)})"
    )
    variants = list(dict.fromkeys(data["variant"]))
    cols = min(3, len(variants))
    rows = -(-len(variants) // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(6.5 * cols, 0.5 * data["shape"].nunique() * rows + 2.5 * rows),
        squeeze=False,
    )
    for ax, variant in zip(axes.flat, variants, strict=False):
        grid = data[data["variant"] == variant].pivot_table(
            index="shape", columns="M", values="speedup_vs_bf16"
        )
        sns.heatmap(
            grid,
            ax=ax,
            annot=True,
            fmt=".2f",
            center=1.0,
            cmap="RdBu",
            annot_kws={"fontsize": 6},
            cbar=False,
        )
        ax.set_title(variant, fontsize=9)
        ax.set_ylabel("N x K")
    for ax in list(axes.flat)[len(variants) :]:
        ax.axis("off")
    label = timing_label(summary)
    fig.suptitle(
        f"Speedup over torch-bf16 (median times{'; ' + label if label else ''})", fontsize=11
    )
    fig.tight_layout()
    return fig


def summary_outputs(bench_tsvs, accuracy_tsvs, shapes_tsv, summary_tsv, heatmap_png) -> None:
    bench = pd.concat([io.read_bench(p) for p in bench_tsvs], ignore_index=True)
    accuracy = pd.concat([io.read_tsv(p) for p in accuracy_tsvs], ignore_index=True)
    summary = summary_table(bench, accuracy, io.read_tsv(shapes_tsv))
    io.write_tsv(summary, summary_tsv)
    figure = heatmap_figure(summary)
    io.write_figure(figure, heatmap_png)
    plt.close(figure)


def forward_pass_figure(table: pd.DataFrame, model: str):
    """Top: time of all linear layers of one forward pass vs M; bottom: speedup over torch-bf16.
    One column per TP size; had-dependent providers drawn at their smallest had size."""
    tps = sorted(table["tp"].unique()) or [1]
    fig, axes = plt.subplots(2, len(tps), figsize=(5.5 * len(tps), 7), squeeze=False, sharex=True)
    drawn = table[table["had_size"].isna() | (table["had_size"] == table["had_size"].min())]
    providers = list(dict.fromkeys(drawn["provider"]))
    palette = dict(zip(providers, sns.color_palette("tab10", len(providers)), strict=True))
    for col, tp in enumerate(tps):
        top, bottom = axes[0, col], axes[1, col]
        rows = drawn[drawn["tp"] == tp]
        if rows.empty:
            _say_nothing_timed(top, rows)
        for (provider, had), line in rows.groupby(["provider", "had_size"], dropna=False):
            line = line.sort_values("M")
            label = provider if pd.isna(had) else f"{provider} (had {had})"
            style = dict(marker="o", ms=3, label=label, color=palette[provider])
            top.plot(line["M"], line["linear_ms"], **style)
            bottom.plot(line["M"], line["speedup_vs_bf16"], **style)
        top.set_title(f"TP {tp}")
        top.set_ylabel("linear layers of one forward pass (ms)")
        top.set_yscale("log")
        bottom.axhline(1.0, color="grey", lw=0.8)
        bottom.set_ylabel("speedup over torch-bf16")
        bottom.set_xlabel("batch size M (tokens)")
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.grid(alpha=0.3)
        bottom.legend(fontsize=8)
    fig.suptitle(f"{model}: all linear layers, one forward pass, one rank", fontsize=11)
    fig.tight_layout()
    return fig


def forward_pass_outputs(shapes_tsvs, bench_tsvs, model: str, table_tsv, figure_png) -> None:
    from .forward import forward_pass_times

    shapes = pd.concat([io.read_tsv(p) for p in shapes_tsvs], ignore_index=True)
    bench = pd.concat([io.read_bench(p) for p in bench_tsvs], ignore_index=True)
    table = forward_pass_times(shapes, bench)
    io.write_tsv(table, table_tsv)
    figure = forward_pass_figure(table, model)
    io.write_figure(figure, figure_png)
    plt.close(figure)
