"""What `snakemake --report` shows besides the figures: the front page, written from the run's own
records, the interactive tables and the labels that name each shape by its layers."""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path

import jinja2
import pandas as pd

from . import io
from .labels import shape_label, shape_users, short_users
from .providers import PROVIDERS, baseline_name

# How each timing method measures, in the words of the README's Timing section.
TIMING_METHODS = {
    "cudagraph": "CUDA-graph replays with a warm L2 (triton's do_bench_cudagraph, as vLLM's "
    "benchmark): at small M the weight may partly sit in L2",
    "cold-l2": "each call after a 256 MB write that flushes L2 (triton's do_bench); launch "
    "overhead included",
    "cpu": "wall-clock time on the CPU",
    "both": "every row warm (CUDA-graph replays, as vLLM's benchmark) and, up to M = {cold}, "
    "also cold (after a 256 MB write that flushes L2), as rows of their own: figures draw cold "
    "rows dashed, and the summary's ``cold_over_warm`` is the cold time over the warm one",
}
STOPPING_RULES = {
    "fixed": "fixed stopping (vLLM's: a fixed time per row)",
    "adaptive": "adaptive stopping (a row stops once its median is stable)",
}


def _rst(text) -> str:
    """Text from the records, safe in reStructuredText and in the Jinja that Snakemake runs over
    the page (a backslash before `{` keeps "{{" and "{%" from being read as Jinja)."""
    return re.sub(r"([\\`*_|{])", r"\\\1", str(text))


def _distinct(records: list[dict], key: str) -> list:
    return list(dict.fromkeys(r.get(key) for r in records if r.get(key) not in (None, "")))


def _device(records: list[dict]) -> str:
    gpus = {
        (r.get("gpu_name"), r.get("compute_capability"), r.get("gpu_memory_gib"), r.get("driver"))
        for r in records
        if r.get("device", "").startswith("cuda")
    }
    if gpus:
        return "; ".join(
            f"**{_rst(name)}** (compute capability {cap}, {memory} GiB, driver {driver or '?'})"
            for name, cap, memory, driver in sorted(gpus, key=str)
        )
    cpus = _distinct(records, "cpu") or ["?"]
    threads = _distinct(records, "cpu_threads") or ["?"]
    plural = "" if threads[0] == 1 else "s"
    return f"**CPU** ({_rst(', '.join(map(str, cpus)))}, {threads[0]} thread{plural}), no CUDA GPU"


def _software(records: list[dict]) -> str:
    parts = []
    for key, name in (
        ("torch", "torch"),
        ("cuda", "CUDA"),
        ("triton", "Triton"),
        ("vllm", "vLLM"),
        ("python", "Python"),
        ("nvfp4bench", "nvfp4bench"),
    ):
        values = _distinct(records, key)
        parts.append(f"{name} {' / '.join(map(str, values))}" if values else f"{name}: none")
    commits = _distinct(records, "git_commit")
    if commits:
        parts.append(
            "commit "
            + " / ".join(
                c[:12] + (" (local changes)" if c.endswith("-dirty") else "") for c in commits
            )
        )
    return _rst(", ".join(parts))


def _timing(records: list[dict]) -> str:
    methods = _distinct(records, "timing_method") or ["?"]
    stopping = list(
        dict.fromkeys(r.get("settings", {}).get("stopping", "fixed") for r in records)
    ) or ["fixed"]
    rep_ms = _distinct([r.get("settings", {}) for r in records], "rep_ms")
    cold = _distinct([r.get("settings", {}) for r in records], "cold_l2_max_batch_size")
    text = "; ".join(
        f"``{m}``: {TIMING_METHODS.get(m, m).format(cold=' / '.join(map(str, cold)) or '?')}"
        for m in methods
    )
    text += "; " + ", ".join(STOPPING_RULES.get(s, s) for s in stopping)
    if rep_ms:
        text += f", {' / '.join(f'{ms:g}' for ms in rep_ms)} ms a row"
    return text


def _rows(count: int) -> str:
    return f"{count} row" + ("" if count == 1 else "s")


def _providers(bench: pd.DataFrame, configured: list[str]) -> dict:
    """Who ran: timed providers with their row count; skipped and failed ones grouped by reason."""
    baseline = baseline_name()
    rows = bench[bench["provider"].isin(configured)]
    names = {p: f"``{p}``" + (" (the baseline)" if p == baseline else "") for p in configured}
    timed = []
    for provider in configured:
        ok = rows[(rows["provider"] == provider) & (rows["status"] == "ok")]
        if len(ok):
            description = _rst(PROVIDERS[provider].description)
            timed.append(f"{names[provider]}: {description}; {_rows(len(ok))} timed")
    not_ok = {}
    for status in ("skipped", "failed"):
        bad = rows[rows["status"] == status]
        not_ok[status] = [
            f"{', '.join(names[p] for p in dict.fromkeys(group['provider']))}: {_rst(reason)} "
            f"({_rows(len(group))})"
            for reason, group in bad.groupby("reason", sort=False)
        ]
    compared = rows[(rows["status"] == "ok") & (rows["provider"] != baseline)]
    if baseline not in configured:
        note = (
            f"**No speedups**: the baseline ``{baseline}`` is not among the providers, so the "
            "overview and the heatmap show TFLOP/s."
        )
    elif compared.empty:
        note = (
            f"**Only the baseline** ``{baseline}`` **was timed on this device** (the reasons are "
            "under Providers), so there is no speedup to show: the overview and the heatmap show "
            "its TFLOP/s, and the speed-vs-error figures only the error."
        )
    else:
        note = ""
    return {"timed": timed, **not_ok, "note": note}


def _formats(providers: list[str]) -> str:
    """The 4-bit formats of the configured providers, for the title: "NVFP4", "NVFP4 and MXFP4"."""
    formats = dict.fromkeys(PROVIDERS[p].format for p in providers if p in PROVIDERS)
    return " and ".join(f.upper() for f in formats if f) or "NVFP4"


def run_description(
    records: list[dict],
    bench: pd.DataFrame,
    shapes: pd.DataFrame,
    skipped_tp: pd.DataFrame,
    models: list[str],
    tp_sizes: list[int],
    providers: list[str],
) -> str:
    """The report's front page (reStructuredText), from the env records and result tables."""
    template = resources.files("nvfp4bench").joinpath("templates/workflow.rst.jinja").read_text()
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    dates = sorted(str(r["date"])[:10] for r in records if r.get("date"))
    skipped = {(str(m), int(tp)): reason for m, tp, reason in skipped_tp.itertuples(index=False)}
    return env.from_string(template).render(
        device=_device(records),
        software=_software(records),
        timing=_timing(records),
        dates=" to ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else "?",
        jobs=len(records),
        sweep_seconds=round(sum(r.get("sweep_seconds") or 0 for r in records)),
        baseline=baseline_name(),
        formats=_formats(providers),
        providers=_providers(bench, providers),
        models=[
            {
                "name": _rst(model),
                "tps": [tp for tp in tp_sizes if (model, tp) not in skipped],
                "skipped": [
                    _rst(skipped[(model, tp)]) for tp in tp_sizes if (model, tp) in skipped
                ],
            }
            for model in models
        ],
        shapes=[
            {"N": n, "K": k, "users": _rst(short_users(users, limit=None))}
            for n, k, users in shapes[["N", "K", "users"]].itertuples(index=False)
        ],
    )


def description_outputs(env_jsons, bench_tsvs, shapes_tsv, skipped_tsv, params, rst_path) -> None:
    records = [json.loads(Path(path).read_text()) for path in env_jsons]
    bench = pd.concat([io.read_bench(p) for p in bench_tsvs], ignore_index=True)
    text = run_description(
        records,
        bench,
        io.read_tsv(shapes_tsv),
        io.read_tsv(skipped_tsv, dtype={"model": str, "reason": str}),
        models=list(params["models"]),
        tp_sizes=list(params["tp_sizes"]),
        providers=list(params["providers"]),
    )
    io.write_bytes(text.encode(), rst_path)


def shape_report_labels(shapes_tsv: str, N: int, K: int) -> dict[str, str]:
    """The label that names a shape in the report's sidebar: its layers, then N x K."""
    return {"layers (N×K)": shape_label(shape_users(io.read_tsv(shapes_tsv), N, K), N, K)}


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as the table shows them: 4 significant digits, missing ones empty (not "NaN").
    DataTables still sorts such a column as numbers: its cells all read as numbers or are empty."""

    def column(values: pd.Series) -> pd.Series:
        integer = pd.api.types.is_integer_dtype(values) or values.dropna().mod(1).eq(0).all()
        return values.map(lambda v: "" if pd.isna(v) else (str(int(v)) if integer else f"{v:.4g}"))

    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    return frame.assign(**{c: column(frame[c]) for c in numeric})


def interactive_table(frame: pd.DataFrame, title: str, about: str, filters: list[str]) -> str:
    """A self-contained HTML page (no server, no network) with `frame` as a DataTables table:
    sortable by every column, searchable, a filter pane for each column in `filters`, and a CSV
    button that saves the rows shown."""
    import itables
    from itables.javascript import generate_init_offline_itables_html

    columns = list(frame.columns)
    table = itables.to_html_datatable(
        _cells(frame),
        connected=False,
        showIndex=False,
        maxBytes=0,  # never downsample: every row is in the page
        classes="display compact nowrap",
        scrollX=True,
        pageLength=25,
        lengthMenu=[25, 100, 500, -1],
        layout={
            "top1": "searchPanes",
            "topStart": "buttons",
            "topEnd": "search",
            "bottomStart": "info",
            "bottomEnd": "paging",
        },
        buttons=["pageLength", "csvHtml5"],
        searchPanes={
            "layout": f"columns-{len(filters)}",
            "cascadePanes": True,
            "columns": [columns.index(c) for c in filters],
            "dtOpts": {"scrollY": "7em", "scrollCollapse": True},
        },
        # A pane shows even where its column has only one value.
        columnDefs=[
            {"searchPanes": {"show": True}, "targets": [columns.index(c) for c in filters]}
        ],
    )
    head = generate_init_offline_itables_html(itables.options.dt_bundle)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;font-size:14px;margin:1em}</style></head><body>"
        f"<h2>{html.escape(title)}</h2><p>{about}</p>{head}{table}</body></html>\n"
    )


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of the summary that were timed or failed, one per model that uses the shape,
    with that model's layers: the interactive table's rows."""
    rows = summary[summary["status"] != "skipped"].copy()
    rows["user"] = rows["users"].fillna("").str.split("; ")
    rows = rows.explode("user")
    model_layer = rows["user"].str.rpartition(":")
    rows["model"] = model_layer[0].str.rstrip("/").str.rsplit("/", n=1).str[-1]
    rows["layer"] = model_layer[2]
    keys = ["model", "N", "K", "M", "provider", "had_size"]
    layers = rows.groupby(keys, dropna=False)["layer"].agg(", ".join).rename("layers")
    rows = rows.drop_duplicates(subset=keys).join(layers, on=keys)
    errors = [c for c in rows.columns if c.startswith("err_output_")]
    view = pd.DataFrame(
        {
            "model": rows["model"],
            "layers": rows["layers"],
            "N": rows["N"],
            "K": rows["K"],
            "provider": rows["provider"],
            "had size": rows["had_size"],
            "M": rows["M"],
            f"speedup over {baseline_name()}": rows["speedup_vs_bf16"],
            "TFLOP/s": rows["tflops_median"],
            **{c.replace("err_output_", "error, "): rows[c] for c in errors},
            "status": rows["status"],
            "kernel": rows["kernel"].fillna(""),
            "reason": rows["reason"].fillna(""),
        }
    )
    return view.sort_values(["model", "N", "K", "provider", "had size", "M"]).reset_index(drop=True)


SUMMARY_ABOUT = (
    "Every timed or failed row: one per shape, batch size M, provider and Hadamard size (had "
    "size), for each model that has the shape. Sort by any column; filter with the panes (a click "
    "selects, another click on the same value clears it) or the search box; CSV saves the rows "
    "shown. Speedup: the baseline's median time at the same shape and M over the row's. Error: "
    "relative output error of that Hadamard size per activation distribution. Skipped providers "
    "are listed with their reason on the report's Workflow page."
)


def summary_page(summary: pd.DataFrame, path: str) -> None:
    page = interactive_table(
        summary_view(summary), "Every timed row", SUMMARY_ABOUT, ["model", "provider", "status"]
    )
    io.write_bytes(page.encode(), path)


FORWARD_ABOUT = (
    "The time of all linear layers of one forward pass on one rank, per TP size, batch size M, "
    "provider and Hadamard size, and its speedup over the baseline at the same TP size and M. "
    "Sort by any column, filter with the panes, CSV saves the rows shown."
)


def forward_page(table: pd.DataFrame, model: str, path: str) -> None:
    view = table.rename(columns={"speedup_vs_bf16": f"speedup over {baseline_name()}"})
    page = interactive_table(view, f"{model}: one forward pass", FORWARD_ABOUT, ["provider", "tp"])
    io.write_bytes(page.encode(), path)
