from nvfp4bench.accuracy import accuracy_table
from nvfp4bench.envinfo import resolve_device
from nvfp4bench.io import write_tsv
from nvfp4bench.rulescript import logged

with logged(snakemake):
    table = accuracy_table(
        int(snakemake.wildcards.N),
        int(snakemake.wildcards.K),
        device=resolve_device(snakemake.params.device).type,
        **snakemake.params.settings,
    )
    write_tsv(table, snakemake.output[0])
