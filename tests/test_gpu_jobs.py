"""Which jobs hold a GPU: bench jobs always do on a CUDA device; accuracy jobs (numerics, not
timings) run on the CPU and hold none unless `accuracy.device: gpu` asks for it. Read from the
resources Snakemake plans for each job in a dry run for a CUDA device (no GPU needed to plan)."""

import re

import pytest
from pipeline_helpers import make_workdir, small_config, snakemake, tiny_llama

pytestmark = pytest.mark.slow  # Snakemake runs


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """config overrides -> {rule: [gpu resource of each planned job]} for a CUDA device."""
    work = make_workdir(tmp_path_factory.mktemp("gpu_jobs"))
    tiny = tiny_llama(tmp_path_factory.mktemp("models") / "tiny", hidden=256, intermediate=512)

    def plan(**accuracy) -> dict[str, list[int]]:
        config = small_config([tiny], device="cuda", device_label="planned-gpu")
        config["accuracy"].update(accuracy)
        # The shapes are a checkpoint: run it (CPU only) so the dry run plans the per-shape jobs.
        snakemake(work, config, "--cores", "1", "results/shapes/unique.tsv")
        output = snakemake(work, config, "-n").stdout
        jobs: dict[str, list[int]] = {}
        for block in re.split(r"\n(?=\S*rule )", output):
            rule = re.search(r"rule (\w+):", block)
            gpu = re.search(r"resources:.*\bgpu=(\d+)", block)
            if rule and gpu:
                jobs.setdefault(rule.group(1), []).append(int(gpu.group(1)))
        return jobs

    return plan


def test_accuracy_jobs_take_no_gpu_by_default(planned):
    jobs = planned()
    assert jobs["bench"] and set(jobs["bench"]) == {1}
    assert jobs["accuracy"] and set(jobs["accuracy"]) == {0}
    assert len(jobs["accuracy"]) == len(jobs["bench"])  # one per shape, all planned


def test_accuracy_on_the_gpu_holds_one_like_a_bench_job(planned):
    jobs = planned(device="gpu")
    assert set(jobs["accuracy"]) == {1} and set(jobs["bench"]) == {1}
