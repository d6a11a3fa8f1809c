from nvfp4bench.job import run_bench_job
from nvfp4bench.rulescript import logged

# The sweep's worker processes are spawned and re-import this file as __mp_main__: run only here.
if __name__ == "__main__":
    with logged(snakemake):
        run_bench_job(
            int(snakemake.wildcards.N),
            int(snakemake.wildcards.K),
            snakemake.params.settings,
            snakemake.output.tsv,
            snakemake.output.env,
        )
