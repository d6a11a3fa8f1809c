import contextlib

from nvfp4bench.accuracy import accuracy_table
from nvfp4bench.envinfo import resolve_device
from nvfp4bench.gpu_slots import gpu_slot, scheduler_assigned_gpus
from nvfp4bench.io import write_tsv
from nvfp4bench.rulescript import logged

with logged(snakemake):
    # On a GPU, take a slot before CUDA initialises, as bench jobs do: never two jobs on one GPU.
    on_gpu = snakemake.params.device == "cuda" and not scheduler_assigned_gpus()
    with gpu_slot() if on_gpu else contextlib.nullcontext():
        table = accuracy_table(
            int(snakemake.wildcards.N),
            int(snakemake.wildcards.K),
            device=resolve_device(snakemake.params.device).type,
            **snakemake.params.settings,
        )
    write_tsv(table, snakemake.output[0])
