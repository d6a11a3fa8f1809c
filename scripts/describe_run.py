from nvfp4bench import report
from nvfp4bench.rulescript import logged

with logged(snakemake):
    report.description_outputs(
        env_jsons=list(snakemake.input.envs),
        bench_tsvs=list(snakemake.input.bench),
        shapes_tsv=snakemake.input.shapes,
        skipped_tsv=snakemake.input.skipped,
        params=dict(snakemake.params.items()),
        rst_path=snakemake.output[0],
    )
