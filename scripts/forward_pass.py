from nvfp4bench import plots
from nvfp4bench.rulescript import logged

with logged(snakemake):
    plots.forward_pass_outputs(
        shapes_tsvs=list(snakemake.input.shapes),
        bench_tsvs=list(snakemake.input.bench),
        model=snakemake.params.model_id,
        table_tsv=snakemake.output.table,
        figure_png=snakemake.output.figure,
    )
