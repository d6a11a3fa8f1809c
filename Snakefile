# nvfp4-bench: NVFP4 (+ Hadamard) vs BF16 GEMMs over the layer shapes of LLMs.
# Usage: snakemake --cores 1 --resources gpu=1   (see README.md)


include: "workflow/rules/common.smk"
include: "workflow/rules/shapes.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/plots.smk"


# Seconds of CPU work each: under SLURM they run on the submitting host instead of waiting in the
# queue; bench, accuracy and plot jobs are submitted.
localrules:
    all,
    layer_shapes,
    unique_shapes,
    summary,
    forward_pass,


rule all:
    default_target: True
    input:
        all_targets,
