from nvfp4bench import plots
from nvfp4bench.rulescript import logged

with logged(snakemake):
    plots.shape_outputs(
        bench_tsvs=list(snakemake.input.bench),
        accuracy_tsvs=list(snakemake.input.accuracy),
        shapes_tsv=snakemake.input.shapes,
        accuracy_png=snakemake.output.accuracy,
        speed_vs_error_png=snakemake.output.speed_vs_error,
    )
