from nvfp4bench.job import run_bench_job
from nvfp4bench.rulescript import logged

with logged(snakemake):
    run_bench_job(
        int(snakemake.wildcards.N),
        int(snakemake.wildcards.K),
        snakemake.params.settings,
        snakemake.output.tsv,
        snakemake.output.env,
    )
