from nvfp4bench import plots
from nvfp4bench.rulescript import logged

with logged(snakemake):
    plots.shape_outputs(
        bench_tsv=snakemake.input.bench,
        accuracy_tsv=snakemake.input.accuracy,
        shapes_tsv=snakemake.input.shapes,
        outputs=dict(snakemake.output.items()),
    )
