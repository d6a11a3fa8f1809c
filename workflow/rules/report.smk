rule describe_run:
    input:
        envs=per_shape(every_format(BENCH_ENV)),
        bench=per_shape(every_format(BENCH_TSV)),
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
        providers=[name for fmt in FORMATS for name in BENCH_PARAMS[fmt]["providers"]],
    script:
        "../../scripts/describe_run.py"
