import pandas as pd

from nvfp4bench.io import read_tsv, write_tsv
from nvfp4bench.rulescript import logged
from nvfp4bench.shapes import unique_shapes

with logged(snakemake):
    write_tsv(unique_shapes([read_tsv(path) for path in snakemake.input]), snakemake.output[0])
    skipped = pd.DataFrame(snakemake.params.skipped, columns=["model", "tp", "reason"])
    write_tsv(skipped, snakemake.output.skipped)
