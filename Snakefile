# nvfp4-bench: NVFP4 (+ Hadamard) vs BF16 GEMMs over the layer shapes of LLMs.
# Usage: snakemake --cores 1 --resources gpu=1   (see README.md)


include: "workflow/rules/common.smk"
include: "workflow/rules/shapes.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/report.smk"


# The report's front page: what ran, where and how, written from this run's records. Absolute,
# because Snakemake reads it relative to this file and results/ lies in the working directory.
report: os.path.abspath(RUN_DESCRIPTION)


# Seconds of CPU work each: under SLURM they run on the submitting host instead of waiting in the
# queue; bench, accuracy and plot jobs are submitted.
localrules:
    all,
    layer_shapes,
    unique_shapes,
    summary,
    forward_pass,
    describe_run,


rule all:
    default_target: True
    input:
        all_targets,
