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
from .labels import shape_label, shape_users, short_users  # noqa: E402
from .providers import PROVIDERS, baseline_name  # noqa: E402

# Wrap text under a figure to this many characters: readable where the report shows the figure
# about 900 pixels wide (a 1280-pixel screen less the report's sidebar).
NOTE_WIDTH = 110


def with_format(bench: pd.DataFrame) -> pd.DataFrame:
    """`format`: each row's provider's 4-bit format from the registry (empty for the baseline
    and for providers the registry does not know)."""
    formats = {name: provider.format or "" for name, provider in PROVIDERS.items()}
    return bench.assign(format=bench["provider"].map(formats).fillna(""))


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
        line = f"{provider}: {status} ×{len(rows)} ({rows['reason'].iloc[0][:200]})"
        notes.append(textwrap.fill(line, NOTE_WIDTH, subsequent_indent="    "))
    return "\n".join(notes)


# How the figures and the summary name a row's timer, where a run used two (timing method both).
COLD_L2 = "events-cold-l2"
# A row's problem, whichever method timed it.
ROW_KEY = ["N", "K", "M", "provider", "had_size"]
SHORT_TIMING = {"cudagraph-warm-l2": "warm L2", COLD_L2: "cold L2", "cpu-wall": "wall clock"}


def _timing_suffix(rows: pd.DataFrame) -> pd.Series:
    """ " (cold L2)" etc. after a row's name where the rows were timed by more than one method."""
    if rows["timing"].nunique() < 2:
        return pd.Series("", index=rows.index)
    return rows["timing"].map(lambda t: f" ({SHORT_TIMING.get(t, t)})")


def timing_label(bench: pd.DataFrame) -> str:
    """How the timed rows were measured, e.g. "timing: cudagraph-warm-l2, fixed stopping"."""
    ok = bench[bench["status"] == "ok"]
    if ok.empty:
        return ""
    pairs = ok[["timing", "stopping"]].fillna("fixed").drop_duplicates()
    return "timing: " + "; ".join(f"{t}, {s} stopping" for t, s in pairs.itertuples(index=False))


def _panel_grid(panels: int, width: float = 4.0, height: float = 3.0, cols: int = 2, **kwargs):
    """At most `cols` panels a row, so that a figure stays readable in the report at 1280
    pixels."""
    if panels == 1 and cols > 1:
        width, height = width * 1.5, height * 1.25
    cols = min(cols, panels)
    rows = -(-panels // cols)
    return plt.subplots(
        rows,
        cols,
        figsize=(width * cols, height * rows),
        squeeze=False,
        layout="constrained",
        **kwargs,
    )


def _log2_batch_axis(ax) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.grid(True, which="both", alpha=0.3)


def throughput_figure(bench: pd.DataFrame, users: str, fmt: str = "nvfp4"):
    """TFLOP/s against M of the baseline and the providers of format `fmt`: one panel per
    Hadamard size that a timed provider depends on, or one panel when none depends on it."""
    N, K = int(bench["N"].iloc[0]), int(bench["K"].iloc[0])
    ok_rows = bench[bench["status"] == "ok"]
    had_sizes = sorted(int(h) for h in ok_rows["had_size"].dropna().unique()) or [0]
    data = _per_panel(bench, had_sizes)
    ok = data[data["status"] == "ok"]
    providers = list(dict.fromkeys(bench["provider"]))
    palette = dict(zip(providers, sns.color_palette("tab10", len(providers)), strict=True))
    ok = ok.assign(line=ok["provider"] + _timing_suffix(ok))
    fig, axes = _panel_grid(len(had_sizes), sharex=True, sharey=True)
    for ax, had in zip(axes.flat, had_sizes, strict=False):
        panel = ok[ok["panel"] == had]
        for (provider, line, method), rows in panel.groupby(
            ["provider", "line", "timing"], sort=False
        ):
            rows = rows.sort_values("M")
            color = palette[provider]
            style = "--" if method == COLD_L2 else "-"
            ax.plot(rows["M"], rows["tflops_median"], style, marker="o", ms=3, label=line,
                    color=color)  # fmt: skip
            ax.fill_between(
                rows["M"], rows["tflops_p20"], rows["tflops_p80"], alpha=0.25, color=color
            )
        _log2_batch_axis(ax)
        ax.set_title(f"Hadamard {had}" if had else "", fontsize=10)
    for ax in axes.flat[len(had_sizes) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("batch size M")
    for ax in axes[:, 0]:
        ax.set_ylabel("TFLOP/s (median, band p20-p80)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][-1].legend(handles, labels, loc="best", fontsize=8)
    title = f"BF16 vs {fmt.upper()} GEMMs, N={N} K={K}"
    layers = textwrap.wrap(short_users(users, limit=8), 100)
    heading = "\n".join([title, *layers, timing_label(bench)]).strip()
    fig.suptitle(heading, fontsize=10)
    note = _skipped_note(bench)
    if note:
        fig.text(0.01, 0, note, fontsize=8.5, va="top")
    return fig


def accuracy_figure(accuracy: pd.DataFrame, users: str):
    """Relative errors against had size; one line per distribution, and per format where the
    table has several (side by side: rotation helps the formats differently)."""
    ok = accuracy[accuracy["status"] == "ok"].copy()
    ok["rotation"] = ok["had_size"].map(lambda h: "none" if h == 0 else str(int(h)))
    order = ["none"] + [str(int(h)) for h in sorted(ok["had_size"].unique()) if h != 0]
    formats = list(dict.fromkeys(accuracy["format"]))
    ok["series"] = (
        ok["distribution"] if len(formats) == 1 else ok["format"] + ", " + ok["distribution"]
    )
    long = ok.melt(
        id_vars=["rotation", "series"],
        value_vars=["err_output", "err_activation", "err_weight"],
        var_name="error",
        value_name="relative error",
    )
    grid = sns.catplot(
        data=long,
        x="rotation",
        y="relative error",
        hue="series",
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
    names = " and ".join(fmt.upper() for fmt in formats)
    title = f"{names} W4A4 relative error, N={N} K={K}\n{short_users(users, limit=8)}"
    grid.figure.suptitle(title, fontsize=10, y=1.08)
    return grid.figure


def speed_vs_error_figure(bench: pd.DataFrame, accuracy: pd.DataFrame, users: str):
    """Each point a had size: speedup over BF16 at the largest timed M against its output error.
    Where no NVFP4 provider was timed, the error of each had size alone."""
    points = speed_error_points(bench, accuracy)
    N, K = int(bench["N"].iloc[0]), int(bench["K"].iloc[0])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    ax.set_xlabel("relative output error ||Y_q - Y|| / ||Y||")
    ax.grid(True, alpha=0.3)
    if points.empty:
        errors = accuracy[accuracy["status"] == "ok"].copy()
        errors["Hadamard size"] = errors["had_size"].map(lambda h: f"{h:g}" if h else "none")
        errors["series"] = errors["format"] + ", " + errors["distribution"]
        sns.stripplot(
            data=errors,
            x="err_output",
            y="Hadamard size",
            hue="series",
            size=7,
            jitter=False,
            ax=ax,
        )
        ax.set_title(
            f"Output error per Hadamard size, N={N} K={K}\n{short_users(users)}\n"
            f"No 4-bit provider was timed on this device, so there is no speed to set against it",
            fontsize=9,
        )
        return fig
    ax.set_title(f"Speed vs error, N={N} K={K}\n{short_users(users)}", fontsize=9)
    ax.set_ylabel(f"speedup over {baseline_name()} at M={int(points['M'].iloc[0])}")
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
    return fig


def with_speedup(bench: pd.DataFrame) -> pd.DataFrame:
    """`speedup_vs_bf16`: the baseline provider's median time at the same shape and M, timed by
    the same method, over the row's (empty where the baseline was not timed)."""
    baseline = bench[(bench["provider"] == baseline_name()) & (bench["status"] == "ok")]
    baseline = baseline[["N", "K", "M", "timing", "ms_median"]]
    baseline = baseline.rename(columns={"ms_median": "bf16_ms"})
    merged = bench.merge(baseline, on=["N", "K", "M", "timing"], how="left")
    merged["speedup_vs_bf16"] = merged["bf16_ms"] / merged["ms_median"]
    return merged.drop(columns="bf16_ms")


def speed_error_points(bench: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    """Each timed had-dependent row at the largest M with its format's error at its had size."""
    timed = with_format(with_speedup(bench))
    timed = timed[(timed["status"] == "ok") & timed["had_size"].notna()]
    timed = timed[timed["speedup_vs_bf16"].notna() & (timed["timing"] != COLD_L2)]
    if timed.empty:
        return pd.DataFrame()
    largest = timed[timed["M"] == timed["M"].max()]
    columns = ["format", "had_size", "distribution", "err_output"]
    errors = accuracy[accuracy["status"] == "ok"][columns]
    return largest.astype({"had_size": int}).merge(errors, on=["format", "had_size"])


def _write_figures(*figures_and_paths) -> None:
    for figure, path in figures_and_paths:
        io.write_figure(figure, path)
        plt.close(figure)


def _read_all(paths, read) -> pd.DataFrame:
    return pd.concat([read(p) for p in paths], ignore_index=True)


def throughput_outputs(
    bench_tsvs, fmt: str, shapes_tsv: str, *, pickle_path: str, throughput_png: str
) -> None:
    """One shape's throughput figure of format `fmt` (and the baseline) and the pickle of those
    rows (named by its layers)."""
    bench = with_format(_read_all(bench_tsvs, io.read_bench))
    bench = bench[bench["format"].isin(["", fmt])].drop(columns="format")
    users = shape_users(io.read_tsv(shapes_tsv), int(bench["N"].iloc[0]), int(bench["K"].iloc[0]))
    io.write_pickle(bench.assign(users=users), pickle_path)
    _write_figures((throughput_figure(bench, users, fmt), throughput_png))


def shape_outputs(
    bench_tsvs, accuracy_tsvs, shapes_tsv: str, *, accuracy_png: str, speed_vs_error_png: str
) -> None:
    """One shape's error figure and speed against error, every format together."""
    bench = _read_all(bench_tsvs, io.read_bench)
    accuracy = _read_all(accuracy_tsvs, io.read_tsv)
    users = shape_users(io.read_tsv(shapes_tsv), int(bench["N"].iloc[0]), int(bench["K"].iloc[0]))
    _write_figures(
        (accuracy_figure(accuracy, users), accuracy_png),
        (speed_vs_error_figure(bench, accuracy, users), speed_vs_error_png),
    )


def summary_table(
    bench: pd.DataFrame, accuracy: pd.DataFrame, shapes: pd.DataFrame
) -> pd.DataFrame:
    """All rows, with their format, speedup over BF16 and their format's output error at their had
    size per distribution; where rows were timed both warm and cold (timing method both),
    `cold_over_warm`: the cold-L2 median time over the warm-L2 one of the same row, on both."""
    table = with_format(with_speedup(bench))
    table = table.merge(shapes[["N", "K", "users"]], on=["N", "K"], how="left")
    if (table["timing"] == COLD_L2).any():
        table = table.merge(_cold_over_warm(table), on=ROW_KEY, how="left")
    if "format" not in accuracy:  # accuracy tables written before MXFP4 are NVFP4's
        accuracy = accuracy.assign(format="nvfp4")
    ok = accuracy[accuracy["status"] == "ok"]
    index = ["N", "K", "format", "had_size"]
    errors = (
        ok.pivot_table(index=index, columns="distribution", values="err_output")
        .add_prefix("err_output_")
        .reset_index()
    )
    errors.columns.name = None
    errors["had_size"] = errors["had_size"].astype("Int64")
    return table.merge(errors, on=index, how="left")


def _cold_over_warm(table: pd.DataFrame) -> pd.DataFrame:
    ok = table[table["status"] == "ok"]
    cold = ok[ok["timing"] == COLD_L2].set_index(ROW_KEY)["ms_median"]
    warm = ok[ok["timing"] == "cudagraph-warm-l2"].set_index(ROW_KEY)["ms_median"]
    return (cold / warm).dropna().rename("cold_over_warm").reset_index()


def compared_rows(summary: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """What the overview and the heatmap show: (timed rows, value column, its label).

    The speedup of every other provider over the baseline where both were timed; otherwise (only
    the baseline ran, as on a CPU, or the baseline did not run) the TFLOP/s of each provider that
    was timed. Each row has `shape` (its layers and N x K) and `variant` (provider, had size)."""
    ok = summary[summary["status"] == "ok"].copy()
    ok["shape"] = [
        shape_label(users, n, k)
        for users, n, k in zip(ok["users"].fillna(""), ok["N"], ok["K"], strict=True)
    ]
    ok["variant"] = (
        ok["provider"]
        + ok["had_size"].map(lambda h: "" if pd.isna(h) else f" (had {int(h)})")
        + _timing_suffix(ok)
    )
    others = ok[(ok["provider"] != baseline_name()) & ok["speedup_vs_bf16"].notna()]
    if len(others):
        return others, "speedup_vs_bf16", f"Speedup over {baseline_name()}"
    return ok, "tflops_median", "TFLOP/s"


def _no_comparison_note(summary: pd.DataFrame, value: str) -> str:
    if value == "speedup_vs_bf16":
        return ""
    if not (summary["provider"] == baseline_name()).any():
        return f"No speedups: the baseline {baseline_name()} is not among the providers"
    return "Only the baseline was timed on this device (the report's Workflow page says why)"


def heatmap_figure(summary: pd.DataFrame):
    """Speedup over the baseline for each (shape, M): one panel per provider and had size; the
    TFLOP/s of the timed providers where there is nothing to compare."""
    data, value, label = compared_rows(summary)
    variants = list(dict.fromkeys(data["variant"])) or [""]
    shapes = max(1, data["shape"].nunique())
    # One column: the shape names take the left third of each panel's width.
    fig, axes = _panel_grid(len(variants), width=9.5, height=0.4 * shapes + 1.8, cols=1)
    for ax, variant in zip(axes.flat, variants, strict=False):
        grid = data[data["variant"] == variant].pivot_table(
            index="shape", columns="M", values=value
        )
        if grid.empty:
            ax.axis("off")
            continue
        speedup = value == "speedup_vs_bf16"
        sns.heatmap(
            grid,
            ax=ax,
            annot=True,
            fmt=".2f" if speedup else ".3g",
            center=1.0 if speedup else None,
            cmap="RdBu" if speedup else "viridis",
            annot_kws={"fontsize": 7},
            cbar=False,
        )
        ax.set_title(variant, fontsize=9)
        ax.set_ylabel("")
        ax.set_xlabel("batch size M")
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(variants) :]:
        ax.axis("off")
    lines = [f"{label} (median times)", timing_label(summary), _no_comparison_note(summary, value)]
    fig.suptitle("\n".join(filter(None, lines)), fontsize=10)
    return fig


def overview_figure(summary: pd.DataFrame):
    """Speedup over the baseline against M, one line per shape, one panel per provider, on the
    same axes; had-dependent providers at their smallest had size. Where there is nothing to
    compare, the TFLOP/s of each timed provider."""
    data, value, label = compared_rows(summary)
    smallest = data.groupby("provider")["had_size"].transform("min")
    data = data[data["had_size"].isna() | (data["had_size"] == smallest).fillna(False)]
    panels = list(dict.fromkeys(data["variant"])) or [""]
    shapes = sorted(data["shape"].unique())
    palette = dict(
        zip(
            shapes,
            sns.color_palette("tab10" if len(shapes) <= 10 else "husl", len(shapes)),
            strict=True,
        )
    )
    fig, axes = _panel_grid(len(panels), sharex=True, sharey=True)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for shape, line in data[data["variant"] == panel].groupby("shape"):
            line = line.sort_values("M")
            ax.plot(line["M"], line[value], marker="o", ms=3, label=shape, color=palette[shape])
        if value == "speedup_vs_bf16":
            ax.axhline(1.0, color="grey", lw=0.8)
        _log2_batch_axis(ax)
        ax.set_title(panel, fontsize=10)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("batch size M")
    for ax in axes[:, 0]:
        ax.set_ylabel(label)
    lines = [
        f"{label} of every shape (median times)",
        timing_label(summary),
        _no_comparison_note(summary, value),
    ]
    fig.suptitle("\n".join(filter(None, lines)), fontsize=10)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=2 if len(shapes) > 3 else 1,
            fontsize=8,
        )
    return fig


def summary_outputs(
    bench_tsvs, accuracy_tsvs, shapes_tsv, *, summary_tsv: str, heatmap_png: str, overview_png: str
) -> pd.DataFrame:
    """Every shape's rows side by side, the speedup heatmap and the overview figure."""
    bench = _read_all(bench_tsvs, io.read_bench)
    accuracy = _read_all(accuracy_tsvs, io.read_tsv)
    summary = summary_table(bench, accuracy, io.read_tsv(shapes_tsv))
    io.write_tsv(summary, summary_tsv)
    _write_figures((heatmap_figure(summary), heatmap_png), (overview_figure(summary), overview_png))
    return summary


def forward_pass_figure(table: pd.DataFrame, model: str):
    """Top: time of all linear layers of one forward pass vs M; below it, where another provider
    than the baseline was timed, the speedup over the baseline. One column per TP size;
    had-dependent providers drawn at their smallest had size."""
    tps = sorted(table["tp"].unique()) or [1]
    compared = (table["provider"] != baseline_name()) & table["speedup_vs_bf16"].notna()
    rows_of_axes = 2 if compared.any() else 1
    fig, axes = plt.subplots(
        rows_of_axes,
        len(tps),
        figsize=(5.5 * len(tps), 3.5 * rows_of_axes),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    drawn = table[table["had_size"].isna() | (table["had_size"] == table["had_size"].min())]
    providers = list(dict.fromkeys(drawn["provider"]))
    palette = dict(zip(providers, sns.color_palette("tab10", len(providers)), strict=True))
    for col, tp in enumerate(tps):
        top = axes[0, col]
        rows = drawn[drawn["tp"] == tp]
        rows = rows.assign(suffix=_timing_suffix(rows))
        groups = rows.groupby(["provider", "had_size", "timing", "suffix"], dropna=False)
        for (provider, had, method, suffix), line in groups:
            line = line.sort_values("M")
            label = (provider if pd.isna(had) else f"{provider} (had {had})") + suffix
            style = dict(marker="o", ms=3, label=label, color=palette[provider],
                         linestyle="--" if method == COLD_L2 else "-")  # fmt: skip
            top.plot(line["M"], line["linear_ms"], **style)
            if rows_of_axes == 2:
                axes[1, col].plot(line["M"], line["speedup_vs_bf16"], **style)
        top.set_title(f"TP {tp}" if len(rows) else f"TP {tp}: no provider timed every layer")
        top.set_ylabel("linear layers of one forward pass (ms)")
        top.set_yscale("log")
        if rows_of_axes == 2:
            axes[1, col].axhline(1.0, color="grey", lw=0.8)
            axes[1, col].set_ylabel(f"speedup over {baseline_name()}")
        axes[-1, col].set_xlabel("batch size M (tokens)")
        for ax in axes[:, col]:
            _log2_batch_axis(ax)
        if len(rows):
            axes[-1, col].legend(fontsize=8)
    fig.suptitle(f"{model}: all linear layers, one forward pass, one rank", fontsize=11)
    return fig


def forward_pass_outputs(
    shapes_tsvs, bench_tsvs, model: str, table_tsv, figure_png
) -> pd.DataFrame:
    from .forward import forward_pass_times

    shapes = _read_all(shapes_tsvs, io.read_tsv)
    bench = _read_all(bench_tsvs, io.read_bench)
    table = forward_pass_times(shapes, bench)
    io.write_tsv(table, table_tsv)
    figure = forward_pass_figure(table, model)
    io.write_figure(figure, figure_png)
    plt.close(figure)
    return table
