"""The DAG of a Blackwell run, built on a machine without a GPU (a SLURM login node, CI)."""

import re

import pytest
from pipeline_helpers import make_workdir, small_config, snakemake, tiny_llama

from nvfp4bench.providers import _FAMILIES

pytestmark = pytest.mark.slow

# tiny: qkv (512, 256), o (256, 256), gate_up (1024, 256), down (256, 512)
SHAPES = {(512, 256), (256, 256), (1024, 256), (256, 512)}


def test_a_blackwell_dag_with_every_provider_builds_on_a_cpu_machine(tmp_path):
    work = make_workdir(tmp_path)
    model = tiny_llama(tmp_path / "models" / "tiny", hidden=256, intermediate=512)
    every_provider = [provider.name for family in _FAMILIES for provider in family.PROVIDERS]
    config = small_config(
        [model], providers=every_provider, device="cuda", device_label="nvidia-b200"
    )
    # The shapes are known once the unique_shapes checkpoint has run (CPU work, no device).
    snakemake(work, config, "--until", "unique_shapes")
    dry = snakemake(work, config, "-n")
    output = dry.stdout + dry.stderr
    assert re.search(rf"^bench\s+{len(SHAPES)}$", output, re.MULTILINE), output[-3000:]
    for N, K in SHAPES:
        assert f"results/nvidia-b200/bench/n{N}_k{K}.tsv" in output
    assert "results/cpu" not in output
