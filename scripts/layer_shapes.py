from nvfp4bench.io import write_tsv
from nvfp4bench.models import model_shapes
from nvfp4bench.rulescript import logged

with logged(snakemake):
    table = model_shapes(snakemake.params.model_id, int(snakemake.wildcards.tp))
    write_tsv(table, snakemake.output[0])
