import math
import os
import sys

from snakemake.utils import min_version

from nvfp4bench import config as cfg
from nvfp4bench.envinfo import device_label, resolve_device
from nvfp4bench.io import read_tsv
from nvfp4bench.report import shape_report_labels

min_version("9.0")


configfile: "config.yaml"


# One line naming the bad value; then the schema's defaults are filled in.
cfg.check_schema(config, workflow.source_path("../schemas/config.schema.yaml"))
cfg.check_providers(config)
# (model, tp) pairs whose layers the TP size cannot split: skipped with one warning line each and
# listed in results/shapes/skipped_tp.tsv; the rest runs. A SLURM job's own Snakemake, which
# reads this file again to run that one job, skips the check (transformers, about 4 s a job):
# the run that submitted it checked the models, and no submitted rule reads the pairs.
SKIPPED_TP = cfg.check_models(config) if workflow.is_main_process else []
for _model, _tp, _reason in SKIPPED_TP:
    print(f"warning: skipped tp={_tp} for {_reason}", file=sys.stderr)

# An explicit device is taken as given at parse time: the DAG may be built on a GPU-less login
# node for jobs that run on GPU nodes (profiles/slurm). Each job checks its device when it starts.
DEVICE = config["device"] if config["device"] != "auto" else resolve_device("auto").type
RESULTS = f"results/{device_label(config['device'], config['device_label'])}"
MODEL_BY_KEY = {cfg.model_key(model): model for model in config["models"]}
# Each format's bench and accuracy jobs are their own (the format in the path), so adding a
# format runs only its jobs. NVFP4's keep the paths they had before formats existed.
FORMATS = config["formats"]
DEFAULT_FORMAT = "nvfp4"
BASELINE_FORMAT = cfg.baseline_format(config)
BENCH_PARAMS = {fmt: cfg.bench_params(config, DEVICE, fmt) for fmt in FORMATS}
ACCURACY_PARAMS = {fmt: cfg.accuracy_params(config, fmt) for fmt in FORMATS}
GPU_JOB = 1 if DEVICE == "cuda" else 0
# Accuracy tables are numerics: on the CPU unless asked for, then holding a GPU like a bench job.
ACCURACY_DEVICE = (
    "cuda" if config["accuracy"]["device"] == "gpu" and DEVICE == "cuda" else "cpu"
)
ACCURACY_GPU_JOB = 1 if ACCURACY_DEVICE == "cuda" else 0


wildcard_constraints:
    N=r"\d+",
    K=r"\d+",
    tp=r"\d+",
    format="nvfp4|mxfp4",


def shapes_tsv(model, tp):
    return f"results/shapes/{cfg.model_key(model)}/tp{tp}.tsv"


def model_shape_tsvs(wildcards):
    """The shape tables of one model (its splittable TP sizes)."""
    return [
        path
        for path in all_shape_tsvs()
        if path.startswith(f"results/shapes/{wildcards.model}/")
    ]


def all_shape_tsvs(wildcards=None):
    skipped = {(model, tp) for model, tp, _ in SKIPPED_TP}
    return [
        shapes_tsv(m, tp)
        for m in config["models"]
        for tp in config["tp_sizes"]
        if (m, tp) not in skipped
    ]


def unique_shapes(wildcards):
    """The unique (N, K) pairs, known once the unique_shapes checkpoint has run."""
    table = read_tsv(checkpoints.unique_shapes.get().output[0])
    return list(zip(table["N"], table["K"]))


def per_shape(pattern):
    """Targets of a per-shape pattern, or of a list of them (one per format), for every shape."""
    patterns = [pattern] if isinstance(pattern, str) else pattern

    def targets(wildcards):
        return [
            p.format(N=n, K=k) for n, k in unique_shapes(wildcards) for p in patterns
        ]

    return targets


def job_format(wildcards):
    """The format of a bench or accuracy job: its path's, NVFP4 where the path has none."""
    return getattr(wildcards, "format", DEFAULT_FORMAT)


def in_format(path, fmt):
    """Where format `fmt`'s copy of a per-shape result lives: NVFP4's where it always was,
    another format's in a folder of its own name beside it."""
    if fmt == DEFAULT_FORMAT:
        return path
    folder, name = os.path.split(path)
    return os.path.join(folder, fmt, name)


def every_format(path):
    return [in_format(path, fmt) for fmt in FORMATS]


def in_results(path):
    """A path under results/<device_label>/: every device-specific output is built here."""
    return os.path.join(RESULTS, path)


BENCH_TSV = in_results("bench/n{N}_k{K}.tsv")
BENCH_ENV = in_results("bench/n{N}_k{K}.env.json")
ACCURACY_TSV = in_results("accuracy/n{N}_k{K}.tsv")
SHAPE_PLOT = in_results("plots/bench_{format}_res_n{N}_k{K}.png")
SHAPE_PICKLE = in_results("plots/bench_{format}_res_n{N}_k{K}.pkl")
ACCURACY_PLOT = in_results("plots/accuracy_n{N}_k{K}.png")
SPEED_ERROR_PLOT = in_results("plots/speed_vs_error_n{N}_k{K}.png")
SUMMARY_TSV = in_results("summary.tsv")
SUMMARY_TABLE = in_results("summary.html")
FORWARD_TSV = in_results("forward/{model}.tsv")
FORWARD_PAGE = in_results("forward/{model}.html")
FORWARD_PLOT = in_results("plots/forward_{model}.png")
HEATMAP = in_results("speedup_heatmap.png")
OVERVIEW = in_results("overview.png")
# The report's front page, written from the run's records (rule describe_run).
RUN_DESCRIPTION = in_results("report/workflow.rst")


def all_targets(wildcards):
    per_format = [
        p.replace("{format}", fmt)
        for p in (SHAPE_PLOT, SHAPE_PICKLE)
        for fmt in FORMATS
    ]
    per_shape_outputs = [*per_format, ACCURACY_PLOT, SPEED_ERROR_PLOT]
    targets = [
        SUMMARY_TSV,
        SUMMARY_TABLE,
        HEATMAP,
        OVERVIEW,
        RUN_DESCRIPTION,
        *all_shape_tsvs(),
    ]
    for key in MODEL_BY_KEY:
        targets += [
            path.format(model=key) for path in (FORWARD_TSV, FORWARD_PAGE, FORWARD_PLOT)
        ]
    for pattern in per_shape_outputs:
        targets += per_shape(pattern)(wildcards)
    return targets


# Report labels: one label a result, because the report turns a second label with two values into
# a toggle between results.
def shape_labels(wildcards, input):
    """How the report's sidebar names a shape: by its layers."""
    return shape_report_labels(input.shapes, int(wildcards.N), int(wildcards.K))


def model_id(wildcards):
    return MODEL_BY_KEY[wildcards.model]


def bench_settings(wildcards):
    return BENCH_PARAMS[job_format(wildcards)]


def accuracy_settings(wildcards):
    return ACCURACY_PARAMS[job_format(wildcards)]


def throughput_inputs(wildcards):
    """A format's bench table of the shape, and the one with the baseline's rows."""
    return [
        in_format(BENCH_TSV, fmt).format(N=wildcards.N, K=wildcards.K)
        for fmt in dict.fromkeys([wildcards.format, BASELINE_FORMAT])
    ]


def throughput_subcategory(wildcards):
    """The report's sidebar entry of a throughput figure: one per format where there are two."""
    return (
        "Throughput" if len(FORMATS) == 1 else f"Throughput, {wildcards.format.upper()}"
    )


def bench_runtime_minutes(wildcards):
    """SLURM time limit of one bench job: grows with the rows it times and the shape's size."""
    settings = bench_settings(wildcards)
    rows = (
        len(settings["batch_sizes"])
        * len(settings["providers"])
        * len(config["had_sizes"])
    )
    work = int(wildcards.N) * int(wildcards.K) / 2**26  # 1 for an 8192 x 8192 layer
    return 10 + math.ceil(rows * max(1.0, work) / 20)
