from nvfp4bench import plots, report
from nvfp4bench.rulescript import logged

with logged(snakemake):
    summary = plots.summary_outputs(
        bench_tsvs=list(snakemake.input.bench),
        accuracy_tsvs=list(snakemake.input.accuracy),
        shapes_tsv=snakemake.input.shapes,
        summary_tsv=snakemake.output.summary,
        heatmap_png=snakemake.output.heatmap,
        overview_png=snakemake.output.overview,
    )
    report.summary_page(summary, snakemake.output.table)
