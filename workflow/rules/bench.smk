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
        settings=bench_settings,
    script:
        "../../scripts/bench.py"


# Another format's bench job: the same job, its outputs in a folder of the format's name.
use rule bench as bench_format with:
    output:
        tsv=in_format(BENCH_TSV, "{format}"),
        env=in_format(BENCH_ENV, "{format}"),
    log:
        in_results("logs/bench/{format}/n{N}_k{K}.log"),


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
        settings=accuracy_settings,
        device=ACCURACY_DEVICE,
    script:
        "../../scripts/accuracy.py"


use rule accuracy as accuracy_format with:
    output:
        in_format(ACCURACY_TSV, "{format}"),
    log:
        in_results("logs/accuracy/{format}/n{N}_k{K}.log"),
