from nvfp4bench import plots, report
from nvfp4bench.rulescript import logged

with logged(snakemake):
    table = plots.forward_pass_outputs(
        shapes_tsvs=list(snakemake.input.shapes),
        bench_tsvs=list(snakemake.input.bench),
        model=snakemake.params.model_id,
        table_tsv=snakemake.output.table,
        figure_png=snakemake.output.figure,
    )
    report.forward_page(table, snakemake.params.model_id, snakemake.output.page)
