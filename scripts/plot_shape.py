from nvfp4bench import plots
from nvfp4bench.rulescript import logged

with logged(snakemake):
    plots.shape_outputs(
        bench_tsv=snakemake.input.bench,
        accuracy_tsv=snakemake.input.accuracy,
        shapes_tsv=snakemake.input.shapes,
        pickle_path=snakemake.output.pickle,
        throughput_png=snakemake.output.plot,
        accuracy_png=snakemake.output.accuracy,
        speed_vs_error_png=snakemake.output.speed_vs_error,
    )
