rule bench:
    output:
        tsv=BENCH_TSV,
        env=BENCH_ENV,
    log:
        in_results("logs/bench/n{N}_k{K}.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    resources:
        gpu=GPU_JOB,
        runtime=bench_runtime_minutes,
    params:
        settings=BENCH_PARAMS,
    script:
        "../../scripts/bench.py"


rule accuracy:
    output:
        ACCURACY_TSV,
    log:
        in_results("logs/accuracy/n{N}_k{K}.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    resources:
        gpu=ACCURACY_GPU_JOB,
    params:
        settings=ACCURACY_PARAMS,
        device=ACCURACY_DEVICE,
    script:
        "../../scripts/accuracy.py"
