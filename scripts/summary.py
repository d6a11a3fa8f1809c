from nvfp4bench import plots, report
from nvfp4bench.rulescript import logged

with logged(snakemake):
    summary = plots.summary_outputs(
        bench_tsvs=list(snakemake.input.bench),
        accuracy_tsvs=list(snakemake.input.accuracy),
        shapes_tsv=snakemake.input.shapes,
        outputs=dict(snakemake.output.items()),
    )
    report.summary_page(summary, snakemake.output.table)
