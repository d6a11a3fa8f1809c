rule bench:
    output:
        tsv=BENCH_TSV,
        env=RESULTS + "/bench/n{N}_k{K}.env.json",
    params:
        settings=BENCH_PARAMS,
    resources:
        gpu=GPU_JOB,
        runtime=bench_runtime_minutes,
    log:
        RESULTS + "/logs/bench/n{N}_k{K}.log",
    conda:
        "../../envs/nvfp4bench.yaml"
    script:
        "../../scripts/bench.py"


rule accuracy:
    output:
        ACCURACY_TSV,
    params:
        settings=ACCURACY_PARAMS,
        device=DEVICE,
    resources:
        gpu=GPU_JOB,
    log:
        RESULTS + "/logs/accuracy/n{N}_k{K}.log",
    conda:
        "../../envs/nvfp4bench.yaml"
    script:
        "../../scripts/accuracy.py"
