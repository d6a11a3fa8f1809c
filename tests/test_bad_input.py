"""Bad input is refused before any job runs, with one line naming the bad value.

Each case is a ``snakemake -n`` in a temp copy of the workflow (no job can run in a dry run, and
the checks run while the Snakefile is parsed, before the DAG is built). Snakemake 9 prints the
error, like the rest of its log, on stdout; the assertions read stdout and stderr together.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from pipeline_helpers import make_workdir, small_config, snakemake, tiny_llama

from nvfp4bench.io import read_bench, read_tsv
from nvfp4bench.models import bundled_folder

pytestmark = pytest.mark.slow  # Snakemake runs (dry runs, ~3 s each)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("bad_input"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("models") / "tiny", hidden=256, intermediate=512)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    # The subprocess inherits os.environ: never reach for the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def cfg(models: list[str], /, **overrides) -> dict:
    config = small_config(models)
    config.update(overrides)
    return config


def refused(work: Path, config: dict, *args: str) -> str:
    """Dry-run the config; return the output after checking nothing was planned or written."""
    result = snakemake(work, config, "-n", *args, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Building DAG of jobs" not in output, output[-3000:]
    assert not (work / "results").exists()
    return output


def the_line(output: str, value: str) -> str:
    """The one line that names ``value`` (every fact about it must be on that line)."""
    lines = [line for line in output.splitlines() if value in line and "File " not in line]
    assert lines, f"{value!r} not named in:\n{output[-3000:]}"
    return lines[0]


def test_unknown_config_key(work, tiny):
    line = the_line(refused(work, cfg([tiny], hadsizes=[16])), "'hadsizes'")
    assert "unknown key" in line and "had_sizes" in line  # the known keys are listed


def test_wrong_type(work, tiny):
    line = the_line(refused(work, cfg([tiny], tp_sizes=["two"])), "'two'")
    assert "tp_sizes[0]" in line and "integer" in line


def test_wrong_type_on_the_command_line(work, tiny):
    output = refused(work, cfg([tiny]), "--config", "timing={'rep_ms': 'fast'}")
    assert "timing.rep_ms" in the_line(output, "'fast'")


@pytest.mark.parametrize("key", ["models", "batch_sizes", "had_sizes"])
def test_empty_list(work, tiny, key):
    line = the_line(refused(work, cfg([tiny], **{key: []})), f"{key}: []")
    assert "non-empty" in line or "too short" in line


@pytest.mark.parametrize("had", [24, 256])
def test_had_size_not_a_power_of_two_in_16_to_128(work, tiny, had):
    line = the_line(refused(work, cfg([tiny], had_sizes=[16, had])), f" {had} ")
    assert "had_sizes[1]" in line and "[16, 32, 64, 128]" in line


def test_unknown_provider(work, tiny):
    config = cfg([tiny], providers=["torch-bf16", "nvfp5"])
    line = the_line(refused(work, config), "'nvfp5'")
    assert "unknown provider" in line and "torch-bf16" in line  # the known ones are listed


def test_model_neither_bundled_nor_cached_says_where_to_drop_a_config(work):
    output = refused(work, cfg(["someorg/not-a-model"]))
    line = the_line(output, "someorg/not-a-model:")
    assert "not bundled and not in the HF cache" in line
    assert str(bundled_folder("someorg/not-a-model") / "config.json") in line


def test_local_config_missing_a_field_the_extractor_needs(work, tmp_path):
    folder = Path(tiny_llama(tmp_path / "no-intermediate", hidden=256, intermediate=512))
    raw = json.loads((folder / "config.json").read_text())
    del raw["intermediate_size"]  # transformers would quietly fill in 11008
    (folder / "config.json").write_text(json.dumps(raw))
    line = the_line(refused(work, cfg([str(folder)])), "'intermediate_size'")
    assert str(folder) in line and "no 'intermediate_size'" in line


def test_config_asking_for_remote_code_is_refused_and_not_run(work, tmp_path):
    # tests/test_models.py checks the refusal in-process; this is the pipeline's view of it.
    folder = Path(tiny_llama(tmp_path / "remote", hidden=256, intermediate=512))
    raw = json.loads((folder / "config.json").read_text())
    raw["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(raw))
    ran = tmp_path / "remote-code-ran"
    (folder / "configuration_evil.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    line = the_line(refused(work, cfg([str(folder)])), "auto_map")
    assert str(folder) in line and "remote code" in line and "refused" in line
    assert not ran.exists()


@pytest.mark.parametrize(
    ("hidden", "intermediate", "layer", "K"),
    [(200, 512, "qkv_proj", 200), (256, 520, "down_proj", 520)],
)
def test_k_not_a_multiple_of_16_is_refused(work, tmp_path, hidden, intermediate, layer, K):
    model = tiny_llama(tmp_path / f"h{hidden}-i{intermediate}", hidden, intermediate)
    line = the_line(refused(work, cfg([model])), f"K={K}")
    assert line.startswith(f"{model}: {layer} at tp=1 ")
    assert "not a multiple of 16" in line


def test_tp_size_that_does_not_divide_a_layer_is_skipped_and_listed(work, tiny):
    """tp=3 cannot split 4 heads: that pair is skipped with one warning line, tp=1 runs, and
    results/shapes/skipped_tp.tsv lists the pair with its reason."""
    config = cfg([tiny], tp_sizes=[1, 3])
    result = snakemake(work, config, "-n")
    output = result.stdout + result.stderr
    warnings = {line for line in output.splitlines() if line.startswith("warning: skipped")}
    assert len(warnings) == 1, output[-3000:]
    (warning,) = warnings
    assert warning.startswith(f"warning: skipped tp=3 for {tiny}: qkv_proj")
    assert "num_attention_heads=4" in warning
    assert "tp1.tsv" in output and "tp3.tsv" not in output
    try:
        snakemake(work, config, "--cores", "1", "results/shapes/unique.tsv")
        skipped = read_tsv(work / "results" / "shapes" / "skipped_tp.tsv")
        assert skipped[["model", "tp"]].values.tolist() == [[tiny, 3]]
        assert "not divisible by" in skipped["reason"][0]
    finally:
        shutil.rmtree(work / "results", ignore_errors=True)  # the other cases expect none


def test_no_tp_size_that_splits_the_model_is_refused(work, tiny):
    line = the_line(refused(work, cfg([tiny], tp_sizes=[3])), "tp=3")
    assert "no model splits over any TP size" in line and "qkv_proj" in line


def test_had_size_not_dividing_k_is_skipped_for_that_shape_the_rest_runs(tmp_path):
    # hidden 240: o_proj is 240 x 240; 240 = 15 * 16, so had 16 fits and had 32 does not.
    work = make_workdir(tmp_path)
    model = tiny_llama(tmp_path / "models" / "h240", hidden=240, intermediate=512)
    config = cfg([model], providers=["test-oom"], had_sizes=[16, 32], batch_sizes=[1])
    assert "misbehaving_providers" in os.environ["NVFP4BENCH_PROVIDER_MODULES"]
    # Only this shape's bench job ("--cores 1" ends --configfile's list of files).
    snakemake(work, config, "--cores", "1", "results/cpu/bench/n240_k240.tsv")
    bench = read_bench(work / "results" / "cpu" / "bench" / "n240_k240.tsv")
    status = dict(zip(bench["had_size"], bench["status"], strict=True))
    reason = dict(zip(bench["had_size"], bench["reason"], strict=True))
    assert status == {16: "ok", 32: "skipped"}
    assert reason[32] == "K=240 is not a multiple of had_size=32"
