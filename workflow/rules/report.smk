rule describe_run:
    input:
        envs=per_shape(BENCH_ENV),
        bench=per_shape(BENCH_TSV),
        shapes="results/shapes/unique.tsv",
        skipped="results/shapes/skipped_tp.tsv",
    output:
        RUN_DESCRIPTION,
    log:
        in_results("logs/describe_run.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    params:
        models=config["models"],
        tp_sizes=config["tp_sizes"],
        providers=config["providers"],
    script:
        "../../scripts/describe_run.py"
