# nvfp4-bench: NVFP4 (+ Hadamard) vs BF16 GEMMs over the layer shapes of LLMs.
# Usage: snakemake --cores 1 --resources gpu=1   (see README.md)


include: "workflow/rules/common.smk"
include: "workflow/rules/shapes.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/plots.smk"


rule all:
    default_target: True
    input:
        all_targets,
