rule plot_shape:
    input:
        bench=BENCH_TSV,
        accuracy=ACCURACY_TSV,
        shapes="results/shapes/unique.tsv",
    output:
        plot=report(
            SHAPE_PLOT,
            caption="../report/shape.rst",
            category="Throughput per shape",
            labels={"N": "{N}", "K": "{K}"},
        ),
        pickle=SHAPE_PICKLE,
        accuracy=report(
            ACCURACY_PLOT,
            caption="../report/accuracy.rst",
            category="Accuracy per shape",
            labels={"N": "{N}", "K": "{K}"},
        ),
        speed_vs_error=report(
            SPEED_ERROR_PLOT,
            caption="../report/speed_vs_error.rst",
            category="Speed vs error",
            labels={"N": "{N}", "K": "{K}"},
        ),
    log:
        in_results("logs/plots/n{N}_k{K}.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    script:
        "../../scripts/plot_shape.py"


rule summary:
    input:
        bench=per_shape(BENCH_TSV),
        accuracy=per_shape(ACCURACY_TSV),
        shapes="results/shapes/unique.tsv",
    output:
        summary=report(SUMMARY_TSV, caption="../report/summary.rst", category="Summary"),
        heatmap=report(HEATMAP, caption="../report/heatmap.rst", category="Summary"),
    log:
        in_results("logs/summary.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    script:
        "../../scripts/summary.py"


rule forward_pass:
    input:
        shapes=model_shape_tsvs,
        bench=per_shape(BENCH_TSV),
    output:
        table=report(
            FORWARD_TSV,
            caption="../report/forward_pass.rst",
            category="Per model",
            labels={"model": "{model}", "what": "table"},
        ),
        figure=report(
            FORWARD_PLOT,
            caption="../report/forward_pass.rst",
            category="Per model",
            labels={"model": "{model}", "what": "figure"},
        ),
    log:
        in_results("logs/forward/{model}.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    params:
        model_id=lambda wildcards: MODEL_BY_KEY[wildcards.model],
    script:
        "../../scripts/forward_pass.py"
