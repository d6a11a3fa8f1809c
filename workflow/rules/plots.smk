rule plot_throughput:
    input:
        bench=throughput_inputs,
        shapes="results/shapes/unique.tsv",
    output:
        plot=report(
            SHAPE_PLOT,
            caption="../report/shape.rst",
            category="Per shape",
            subcategory=throughput_subcategory,
            labels=shape_labels,
        ),
        pickle=SHAPE_PICKLE,
    log:
        in_results("logs/plots/{format}_n{N}_k{K}.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    script:
        "../../scripts/plot_throughput.py"


rule plot_shape:
    input:
        bench=every_format(BENCH_TSV),
        accuracy=every_format(ACCURACY_TSV),
        shapes="results/shapes/unique.tsv",
    output:
        accuracy=report(
            ACCURACY_PLOT,
            caption="../report/accuracy.rst",
            category="Per shape",
            subcategory="Accuracy",
            labels=shape_labels,
        ),
        speed_vs_error=report(
            SPEED_ERROR_PLOT,
            caption="../report/speed_vs_error.rst",
            category="Per shape",
            subcategory="Speed vs error",
            labels=shape_labels,
        ),
    log:
        in_results("logs/plots/n{N}_k{K}.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    script:
        "../../scripts/plot_shape.py"


rule summary:
    input:
        bench=per_shape(every_format(BENCH_TSV)),
        accuracy=per_shape(every_format(ACCURACY_TSV)),
        shapes="results/shapes/unique.tsv",
    output:
        summary=SUMMARY_TSV,
        table=report(
            SUMMARY_TABLE,
            caption="../report/summary.rst",
            category="Summary",
            labels={"view": "table of every row"},
        ),
        heatmap=report(
            HEATMAP,
            caption="../report/heatmap.rst",
            category="Summary",
            labels={"view": "heatmap of shape × M"},
        ),
        overview=report(
            OVERVIEW,
            caption="../report/overview.rst",
            category="Overview",
            labels={"figure": "every shape against M"},
        ),
    log:
        in_results("logs/summary.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    script:
        "../../scripts/summary.py"


rule forward_pass:
    input:
        shapes=model_shape_tsvs,
        bench=per_shape(every_format(BENCH_TSV)),
    output:
        table=FORWARD_TSV,
        page=report(
            FORWARD_PAGE,
            caption="../report/forward_pass.rst",
            category="Per model",
            subcategory=model_id,
            labels={"view": "table"},
        ),
        figure=report(
            FORWARD_PLOT,
            caption="../report/forward_pass.rst",
            category="Per model",
            subcategory=model_id,
            labels={"view": "figure"},
        ),
    log:
        in_results("logs/forward/{model}.log"),
    conda:
        "../../envs/nvfp4bench.yaml"
    params:
        model_id=model_id,
    script:
        "../../scripts/forward_pass.py"
