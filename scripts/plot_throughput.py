from nvfp4bench import plots
from nvfp4bench.rulescript import logged

with logged(snakemake):
    plots.throughput_outputs(
        bench_tsvs=list(snakemake.input.bench),
        fmt=snakemake.wildcards.format,
        shapes_tsv=snakemake.input.shapes,
        pickle_path=snakemake.output.pickle,
        throughput_png=snakemake.output.plot,
    )
