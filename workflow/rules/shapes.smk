rule layer_shapes:
    output:
        "results/shapes/{model}/tp{tp}.tsv",
    log:
        "results/logs/shapes/{model}/tp{tp}.log",
    conda:
        "../../envs/nvfp4bench.yaml"
    params:
        model_id=model_id,
    script:
        "../../scripts/layer_shapes.py"


checkpoint unique_shapes:
    input:
        all_shape_tsvs,
    output:
        "results/shapes/unique.tsv",
        skipped="results/shapes/skipped_tp.tsv",
    log:
        "results/logs/shapes/unique.log",
    conda:
        "../../envs/nvfp4bench.yaml"
    params:
        skipped=[list(pair) for pair in SKIPPED_TP],
    script:
        "../../scripts/unique_shapes.py"
