"""The report's front page, tables and labels, from records made up here."""

import html as html_text
import json
import re
from urllib.parse import quote

import jinja2
import pandas as pd
import pytest
from docutils.core import publish_parts

from nvfp4bench import providers, report
from nvfp4bench.io import BENCH_COLUMNS

# What Snakemake appends to the front page before rendering it: a link target per category.
CATEGORY_LINKS = "\n\n" + "\n".join(
    f".. _{name}: javascript:app.showCategory('{quote(name)}')"
    for name in ("Overview", "Summary", "Per model", "Per shape")
)

H100 = {
    "date": "2026-11-25T10:00:00+00:00",
    "device": "cuda",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "gpu_memory_gib": 79.2,
    "driver": "580.159.04",
    "torch": "2.11.0+cu130",
    "cuda": "13.0",
    "triton": "3.6.0",
    "vllm": None,
    "python": "3.12.3",
    "nvfp4bench": "0.1.0",
    "git_commit": "5c4a410a0f3042f4546170871a1fca4d51946208-dirty",
    "timing_method": "cudagraph",
    "settings": {"stopping": "fixed", "rep_ms": 200.0},
    "sweep_seconds": 91.1,
}
CPU = {
    "date": "2026-11-26T04:00:00+00:00",
    "device": "cpu",
    "cpu": "x86_64",
    "cpu_threads": 2,
    "torch": "2.13.0+cpu",
    "cuda": None,
    "python": "3.11.7",
    "nvfp4bench": "0.1.0",
    "timing_method": "cpu",
    "settings": {"stopping": "fixed", "rep_ms": 100.0},
    "sweep_seconds": 12.0,
}
SHAPES = pd.DataFrame(
    {
        "N": [8192, 10240],
        "K": [8192, 8192],
        "users": [
            "meta-llama/Llama-3.3-70B-Instruct:o_proj; Qwen/Qwen3-32B:qkv_proj@tp2",
            "meta-llama/Llama-3.3-70B-Instruct:qkv_proj",
        ],
    }
)


def bench(*rows) -> pd.DataFrame:
    """Bench rows (provider, had_size, M, status, reason, ms) at N = K = 8192."""
    frame = pd.DataFrame(
        [
            dict.fromkeys(BENCH_COLUMNS)
            | dict(N=8192, K=8192, M=M, provider=p, had_size=had, status=status, reason=reason,
                   ms_median=ms, tflops_median=None if ms is None else 2 * M * 8192**2 / ms / 1e9,
                   timing="cudagraph-warm-l2", stopping="fixed", kernel="")
            for p, had, M, status, reason, ms in rows
        ],
        columns=BENCH_COLUMNS,
    )  # fmt: skip
    frame["had_size"] = frame["had_size"].astype("Int64")
    return frame


def front_page(records, rows, configured, skipped_tp=None) -> tuple[str, str]:
    """(its HTML, its text) as the report shows it, after Snakemake's Jinja and docutils."""
    skipped_tp = skipped_tp if skipped_tp is not None else pd.DataFrame(
        columns=["model", "tp", "reason"]
    )  # fmt: skip
    rst = report.run_description(
        records,
        rows,
        SHAPES,
        skipped_tp,
        models=["meta-llama/Llama-3.3-70B-Instruct", "Qwen/Qwen3-32B"],
        tp_sizes=[1, 2],
        providers=configured,
    )
    rendered = jinja2.Environment().from_string(rst + CATEGORY_LINKS).render()
    html = html_text.unescape(publish_parts(rendered, writer="html")["html_body"])
    return html, re.sub(r"<[^>]+>", "", html)


def test_front_page_names_the_gpu_versions_timing_and_each_provider():
    rows = bench(
        ("torch-bf16", None, 1, "ok", "", 0.02),
        ("nvfp4-cuda", 16, 1, "ok", "", 0.01),
        ("nvfp4", 16, 1, "skipped", "needs compute capability 10.x/12.x; this GPU is 9.0", None),
        ("nvfp4-cuda", 32, 1, "failed", "out of memory: {{ tried }} *80* GiB", None),
    )
    skipped_tp = pd.DataFrame(
        {"model": ["Qwen/Qwen3-32B"], "tp": [1], "reason": ["Qwen3-32B: heads not divisible"]}
    )
    configured = ["torch-bf16", "nvfp4", "nvfp4-cuda"]
    html, text = front_page([H100, dict(H100, date="2026-11-26T01:00:00")], rows, configured,
                            skipped_tp)  # fmt: skip
    assert "System Message" not in html  # no broken markup or link
    assert "javascript:app.showCategory('Overview')" in html
    for fact in (
        "Device: NVIDIA H100 80GB HBM3 (compute capability 9.0, 79.2 GiB, driver 580.159.04)",
        "torch 2.11.0+cu130, CUDA 13.0, Triton 3.6.0, vLLM: none, Python 3.12.3",
        "commit 5c4a410a0f30 (local changes)",
        "warm L2",
        "fixed stopping",
        "200 ms a row",
        "2026-11-25 to 2026-11-26; 2 bench jobs",
        "torch-bf16 (the baseline): torch.nn.functional.linear in bf16; 1 row timed",
        "nvfp4: needs compute capability 10.x/12.x; this GPU is 9.0 (1 row)",
        # Text from a record stays text: neither Jinja nor reStructuredText markup.
        "nvfp4-cuda: out of memory: {{ tried }} *80* GiB (1 row)",
        "Qwen/Qwen3-32B at TP 2",
        "skipped: Qwen3-32B: heads not divisible",
        "8192×8192: Llama-3.3-70B-Instruct:o_proj, Qwen3-32B:qkv_proj@tp2",
    ):
        assert fact in text, fact
    assert "no speedup" not in text.lower()


def test_front_page_says_why_there_are_no_speedups():
    only_bf16 = bench(
        ("torch-bf16", None, 1, "ok", "", 0.02),
        ("torch-bf16", None, 16, "ok", "", 0.02),
        ("nvfp4", 16, 1, "skipped", "needs a CUDA GPU; ran on cpu", None),
        ("nvfp4-noquant", None, 1, "skipped", "needs a CUDA GPU; ran on cpu", None),
    )
    _, text = front_page([CPU], only_bf16, ["torch-bf16", "nvfp4", "nvfp4-noquant"])
    assert "Device: CPU (x86_64, 2 threads), no CUDA GPU" in text
    assert "wall-clock time on the CPU" in text
    assert "; 2 rows timed" in text
    # Providers skipped for the same reason share a line.
    assert "nvfp4, nvfp4-noquant: needs a CUDA GPU; ran on cpu (2 rows)" in text
    note = text.index("Only the baseline torch-bf16 was timed on this device")
    assert note < text.index("The run")  # said before anything else
    no_baseline = bench(("nvfp4-cuda", 16, 1, "ok", "", 0.01))
    _, text = front_page([H100], no_baseline, ["nvfp4-cuda"])
    assert "the baseline torch-bf16 is not among the providers" in text


def test_there_is_exactly_one_baseline(monkeypatch):
    assert providers.baseline_name() == "torch-bf16"
    bf16 = providers.PROVIDERS["torch-bf16"]
    second = type(bf16)(**{**bf16.__dict__, "name": "other-bf16"})
    monkeypatch.setitem(providers.PROVIDERS, "other-bf16", second)
    with pytest.raises(ValueError, match="exactly one baseline provider"):
        providers.baseline_name()


def summary_rows() -> pd.DataFrame:
    rows = bench(
        ("torch-bf16", None, 1, "ok", "", 0.02),
        ("nvfp4-cuda", 16, 1, "ok", "", 0.01),
        ("nvfp4", 16, 1, "skipped", "needs 10.x", None),
        ("nvfp4-cuda", 32, 1, "failed", "out of memory", None),
    )
    rows["users"] = SHAPES["users"].iloc[0]
    rows["speedup_vs_bf16"] = 0.02 / rows["ms_median"]
    rows["err_output_gaussian"] = rows["had_size"].map({16: 0.134, 32: 0.135})
    return rows


def test_summary_table_has_a_row_per_model_of_each_timed_or_failed_row():
    view = report.summary_view(summary_rows())
    # Two models share the shape: each timed or failed row once per model; skipped rows left out.
    assert len(view) == 2 * 3
    assert set(view["model"]) == {"Llama-3.3-70B-Instruct", "Qwen3-32B"}
    assert set(view[view["model"] == "Qwen3-32B"]["layers"]) == {"qkv_proj@tp2"}
    timed = view[(view["provider"] == "nvfp4-cuda") & (view["status"] == "ok")]
    assert timed["speedup over torch-bf16"].tolist() == [2.0, 2.0]
    assert timed["error, gaussian"].tolist() == [0.134, 0.134]
    failed = view[view["status"] == "failed"]
    assert failed["reason"].tolist() == ["out of memory"] * 2


def test_table_page_works_offline_with_a_filter_per_named_column():
    view = report.summary_view(summary_rows())
    page = report.interactive_table(view, "Every <timed> row", "about", ["model", "provider"])
    assert "unpkg" not in page and "https://cdn" not in page  # the DataTables bundle is inline
    assert "<h2>Every &lt;timed&gt; row</h2>" in page
    start = page.index("let dt_args = ") + len("let dt_args = ")
    options, _ = json.JSONDecoder().raw_decode(page[start:])
    assert options["searchPanes"]["columns"] == [0, 4]  # model and provider
    assert options["layout"]["top1"] == "searchPanes"
    cells = json.loads(options["data_json"])
    assert len(cells) == len(view)
    # Numbers as shown: 4 significant digits, a missing one empty rather than "NaN".
    torch_row = next(row for row in cells if row[4] == "torch-bf16")
    assert torch_row[5] == "" and torch_row[8] == f"{2 * 8192**2 / 0.02 / 1e9:.4g}"
    assert "NaN" not in options["data_json"]


def test_shape_label_names_the_layers(tmp_path):
    path = tmp_path / "unique.tsv"
    SHAPES.to_csv(path, sep="\t", index=False)
    assert report.shape_report_labels(str(path), 8192, 8192) == {
        "layers (N×K)": "Llama-3.3-70B-Instruct:o_proj, Qwen3-32B:qkv_proj@tp2 (8192×8192)"
    }


def test_front_page_says_which_rows_were_timed_cold_under_method_both():
    settings = {**H100["settings"], "cold_l2_max_batch_size": 128}
    record = dict(H100, timing_method="both", settings=settings)
    rows = bench(("torch-bf16", None, 1, "ok", "", 0.02))
    _, text = front_page([record], rows, ["torch-bf16"])
    assert "both: every row warm" in text and "up to M = 128, also cold" in text
    assert "cold_over_warm" in text


def test_front_page_title_names_the_configured_formats():
    rows = bench(("torch-bf16", None, 1, "ok", "", 0.02))
    for configured, title in (
        (["torch-bf16", "nvfp4-cuda"], "nvfp4-bench: NVFP4 against BF16 GEMMs"),
        (["torch-bf16", "nvfp4", "mxfp4-triton"], "nvfp4-bench: NVFP4 and MXFP4 against BF16"),
    ):
        html, text = front_page([H100], rows, configured)
        assert title in text and "System Message" not in html
        assert ("MXFP4" in text) == ("mxfp4-triton" in configured)
