"""End-to-end Snakemake runs on the CPU: outputs, their content, and incremental re-runs."""

import json
import os
import re
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from pipeline_helpers import make_workdir, mtimes, small_config, snakemake, tiny_llama

from nvfp4bench import report_browser
from nvfp4bench.io import BENCH_COLUMNS, read_bench, read_tsv

pytestmark = pytest.mark.slow

# tiny-a: qkv (512, 256), o (256, 256), gate_up (1024, 256), down (256, 512)
# tiny-b shares qkv and o with tiny-a, and adds gate_up (1536, 256), down (256, 768)
SHAPES_A = {(512, 256), (256, 256), (1024, 256), (256, 512)}
SHAPES_B_NEW = {(1536, 256), (256, 768)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One complete run of a small sweep, shared by the tests below (they only read it)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    work = make_workdir(tmp)
    models = [tiny_llama(tmp / "models" / "tiny-a", hidden=256, intermediate=512)]
    config = small_config(models)
    snakemake(work, config)
    return work, config, tmp


def bench_shapes(results):
    return {
        tuple(int(x) for x in p.stem[1:].split("_k")) for p in (results / "bench").glob("n*_k*.tsv")
    }


def test_every_output_written_with_the_right_content(run):
    work, config, _ = run
    results = work / "results" / "cpu"
    assert bench_shapes(results) == SHAPES_A
    for N, K in SHAPES_A:
        bench = read_bench(results / "bench" / f"n{N}_k{K}.tsv")
        assert list(bench.columns) == BENCH_COLUMNS
        assert set(zip(bench["N"], bench["K"], strict=True)) == {(N, K)}
        # bf16 once per M, nvfp4 per (had, M), noquant once per M
        assert len(bench) == 2 * (1 + 2 + 1)
        bf16 = bench[bench["provider"] == "torch-bf16"]
        assert (bf16["status"] == "ok").all() and (bf16["tflops_median"] > 0).all()
        nvfp4 = bench[bench["provider"].str.startswith("nvfp4")]
        assert (nvfp4["status"] == "skipped").all()
        assert nvfp4["reason"].str.contains("compute capability").all()
        env = json.loads((results / "bench" / f"n{N}_k{K}.env.json").read_text())
        assert env["shape"] == {"N": N, "K": K}
        assert env["settings"]["batch_sizes"] == [1, 2] and env["timing_method"] == "cpu"
        assert env["torch"] and env["config_hash"] and env["date"]
        accuracy = read_tsv(results / "accuracy" / f"n{N}_k{K}.tsv")
        assert set(accuracy["had_size"]) == {0, 16, 32}
        assert set(accuracy["distribution"]) == {"gaussian", "outliers"}
        assert accuracy["err_output"].between(0.01, 0.5).all()
        image = matplotlib.image.imread(results / "plots" / f"bench_nvfp4_res_n{N}_k{K}.png")
        assert image.shape[0] > 200 and image.shape[1] > 400
        frame = pd.read_pickle(results / "plots" / f"bench_nvfp4_res_n{N}_k{K}.pkl")
        assert (
            frame["users"]
            .iloc[0]
            .endswith(
                {
                    (512, 256): "qkv_proj",
                    (256, 256): "o_proj",
                    (1024, 256): "gate_up_proj",
                    (256, 512): "down_proj",
                }[(N, K)]
            )
        )
        for name in (f"accuracy_n{N}_k{K}.png", f"speed_vs_error_n{N}_k{K}.png"):
            assert matplotlib.image.imread(results / "plots" / name).size > 0
    summary = read_tsv(results / "summary.tsv")
    assert len(summary) == 4 * 8
    bf16 = summary[summary["provider"] == "torch-bf16"]
    assert (bf16["speedup_vs_bf16"] == 1.0).all()
    assert {"err_output_gaussian", "err_output_outliers"} <= set(summary.columns)
    with_had = summary[summary["had_size"].notna()]
    assert with_had["err_output_gaussian"].notna().all()
    assert matplotlib.image.imread(results / "speedup_heatmap.png").size > 0
    shapes = read_tsv(work / "results" / "shapes" / "unique.tsv")
    assert set(zip(shapes["N"], shapes["K"], strict=True)) == SHAPES_A
    # The per-model answer: BF16's linear layers of one forward pass = sum of count x time.
    key = Path(config["models"][0]).name  # a local folder's key is its path with / -> --
    (table_path,) = (results / "forward").glob(f"*{key}.tsv")
    forward = read_tsv(table_path)
    layers = read_tsv(next((work / "results" / "shapes").glob(f"*{key}/tp1.tsv")))
    assert (layers["count"] == 2).all()  # the tiny model has 2 decoder layers
    summary_bf16 = bf16.set_index(["N", "K", "M"])["ms_median"]
    for M in (1, 2):
        expected = sum(
            2 * summary_bf16[(n, k, M)] for n, k in zip(layers["N"], layers["K"], strict=True)
        )
        row = forward[(forward["provider"] == "torch-bf16") & (forward["M"] == M)]
        assert len(row) == 1 and abs(row["linear_ms"].iloc[0] - expected) < 1e-9 * expected
    assert (forward["speedup_vs_bf16"] == 1.0).all()
    (figure,) = (results / "plots").glob(f"forward_*{key}.png")
    assert matplotlib.image.imread(figure).shape[0] > 300


@pytest.fixture(scope="module")
def report(run):
    """`snakemake --report` of the run, made once (before any test below changes the run)."""
    work, config, _ = run
    snakemake(work, config, "--report", "report.html")
    return work / "report.html"


def test_report_embeds_every_figure(report):
    html = report.read_text(errors="replace")
    for N, K in SHAPES_A:
        for name in (f"bench_nvfp4_res_n{N}_k{K}.png", f"accuracy_n{N}_k{K}.png",
                     f"speed_vs_error_n{N}_k{K}.png"):  # fmt: skip
            assert name in html
    for name in ("overview.png", "speedup_heatmap.png", "summary.html", "forward_"):
        assert name in html, name


def test_report_in_a_browser(run, report):
    """The report as a user sees it in Chromium: the front page names what ran, every result in
    the sidebar shows its image or its interactive table, and nothing logs an error."""
    reason = report_browser.unavailable()
    if reason:
        if os.environ.get("NVFP4BENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NVFP4BENCH_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with report_browser.ReportBrowser(report) as browser:
        visit = browser.visit_all()
        linked = {name: browser.follow_front_page_link(name) for name in ("Overview", "Summary")}
        visit.console_errors += browser.console_errors()
    assert linked == {"Overview": "Overview", "Summary": "Summary"}
    front = " ".join(visit.front_page.split())
    assert "Device: CPU" in front, front
    assert "torch-bf16 (the baseline)" in front and "rows timed" in front
    assert "nvfp4, nvfp4-noquant: needs a CUDA GPU" in front and "(24 rows)" in front, front
    assert "Only the baseline torch-bf16 was timed on this device" in front
    assert "tiny-a at TP 1" in front and "512×256: tiny-a:qkv_proj" in front
    assert visit.problems() == []
    assert {s.kind for s in visit.shown} == {"image", "table"}
    assert len(visit.shown) == len(visit.results) == 3 * len(SHAPES_A) + 5
    labels = {s.sidebar[2] for s in visit.shown if s.sidebar[:2] == ["Per shape", "Throughput"]}
    assert labels == {
        "tiny-a:qkv_proj (512×256)",
        "tiny-a:o_proj (256×256)",
        "tiny-a:gate_up_proj (1024×256)",
        "tiny-a:down_proj (256×512)",
    }


def test_unchanged_config_has_nothing_to_do(run):
    work, config, _ = run
    result = snakemake(work, config, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_adding_mxfp4_runs_only_its_own_bench_and_accuracy_jobs(run):
    """formats: [nvfp4] -> [nvfp4, mxfp4] with the MXFP4 providers: one new bench and accuracy job
    per shape, in results/cpu/{bench,accuracy}/mxfp4/; the NVFP4 ones are not run again."""
    work, config, _ = run
    results = work / "results" / "cpu"
    before = {folder: mtimes(results / folder, "*.tsv") for folder in ("bench", "accuracy")}
    grown = dict(
        config,
        formats=["nvfp4", "mxfp4"],
        providers=[*config["providers"], "mxfp4-triton", "mxfp4-triton-noquant"],
    )
    dry = snakemake(work, grown, "-n")
    output = dry.stdout + dry.stderr
    for rule in ("bench_format", "accuracy_format"):
        assert re.search(rf"^{rule}\s+4$", output, re.MULTILINE), output[-2000:]
    for rule in ("bench", "accuracy"):
        assert not re.search(rf"^{rule}\s+\d+$", output, re.MULTILINE), output[-2000:]
    snakemake(work, grown)
    for folder in ("bench", "accuracy"):
        assert mtimes(results / folder, "*.tsv") == before[folder]
    for N, K in SHAPES_A:
        bench = read_bench(results / "bench" / "mxfp4" / f"n{N}_k{K}.tsv")
        assert set(bench["provider"]) == {"mxfp4-triton", "mxfp4-triton-noquant"}
        assert (bench["status"] == "skipped").all()
        accuracy = read_tsv(results / "accuracy" / "mxfp4" / f"n{N}_k{K}.tsv")
        assert set(accuracy["format"]) == {"mxfp4"}
        skipped = accuracy[accuracy["had_size"] == 16]
        assert (skipped["status"] == "skipped").all()
        assert skipped["reason"].str.startswith("had_size=16 is not an MXFP4 rotation").all()
        assert accuracy[accuracy["had_size"] != 16]["err_output"].between(0.01, 0.5).all()
        assert (results / "plots" / f"bench_mxfp4_res_n{N}_k{K}.png").exists()
    summary = read_tsv(results / "summary.tsv")
    assert set(summary["format"].fillna("")) == {"", "nvfp4", "mxfp4"}
    again = snakemake(work, grown, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_adding_a_model_runs_only_its_new_shapes_then_a_setting_reruns_all(run):
    work, config, tmp = run
    results = work / "results" / "cpu"
    before = mtimes(results / "bench", "*.tsv")
    model_b = tiny_llama(tmp / "models" / "tiny-b", hidden=256, intermediate=768)
    grown = dict(config, models=[*config["models"], model_b])
    snakemake(work, grown)
    after = mtimes(results / "bench", "*.tsv")
    assert {k: v for k, v in after.items() if k in before} == before  # old shapes untouched
    new = {tuple(int(x) for x in name[1:-4].split("_k")) for name in set(after) - set(before)}
    assert new == SHAPES_B_NEW
    users = read_tsv(work / "results" / "shapes" / "unique.tsv").set_index(["N", "K"])["users"]
    assert "tiny-a:qkv_proj" in users[(512, 256)] and "tiny-b:qkv_proj" in users[(512, 256)]

    # A bench setting (batch sizes) changes every bench job's params: all six are scheduled for
    # it, and one of them, run, has the new batch sizes (running all six adds nothing but time).
    changed = dict(grown, batch_sizes=[1, 4])
    dry = snakemake(work, changed, "-n")
    output = dry.stdout + dry.stderr
    assert "params" in output.lower()
    assert re.search(r"^bench\s+6$", output, re.MULTILINE), output[-2000:]
    # a target must follow an option: --configfile takes every word up to the next one
    snakemake(work, changed, "--cores", "2", "results/cpu/bench/n256_k256.tsv")
    rerun = mtimes(results / "bench", "*.tsv")
    assert rerun["n256_k256.tsv"] != after["n256_k256.tsv"]
    assert set(read_bench(results / "bench" / "n256_k256.tsv")["M"]) == {1, 4}

    # Every other bench setting is a param as well: each change schedules all six bench jobs.
    for change in (
        {"had_sizes": [16]},
        {"providers": ["torch-bf16"]},
        {"timing": {"method": "cold-l2"}},
        {"cpu": {"max_batch_size": 16, "rep_ms": 3}},
    ):
        dry = snakemake(work, dict(changed, **change), "-n")
        output = dry.stdout + dry.stderr
        assert re.search(r"^bench\s+6$", output, re.MULTILINE), (change, output[-2000:])
    # ... and a setting the timings do not depend on schedules no bench job of its own: only the
    # five that the batch-size change left to run.
    fewer_tokens = dict(changed, accuracy=dict(changed["accuracy"], tokens=8))
    dry = snakemake(work, fewer_tokens, "-n")
    output = dry.stdout + dry.stderr
    assert re.search(r"^accuracy\s+6$", output, re.MULTILINE)
    assert re.search(r"^bench\s+5$", output, re.MULTILINE), output[-2000:]
