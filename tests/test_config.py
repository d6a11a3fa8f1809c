import dataclasses
from pathlib import Path

import pytest
import yaml

from nvfp4bench import config as cfg
from nvfp4bench.numerics import HAD_SIZES
from nvfp4bench.sweep import SweepSettings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def default_config() -> dict:
    """config.yaml with the schema's defaults filled in, as the workflow sees it."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg.check_schema(config, SCHEMA)
    return config


def _defaults(schema: dict, path: str = "") -> dict[str, object]:
    """'timing.rep_ms' -> 200: every default the schema writes."""
    found = {}
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub and sub.get("type") != "object":
            found[path + key] = sub["default"]
        found.update(_defaults(sub, f"{path}{key}."))
    return found


def _settings(config: dict, path: str = "") -> set[str]:
    keys = set()
    for key, value in config.items():
        keys |= _settings(value, f"{path}{key}.") if isinstance(value, dict) else {path + key}
    return keys


def test_each_default_is_written_once_in_the_schema():
    schema = yaml.safe_load(SCHEMA.read_text())
    written = _settings(yaml.safe_load((ROOT / "config.yaml").read_text()))
    defaults = _defaults(schema)
    assert "timing.rep_ms" in defaults and "accuracy.device" in defaults
    assert not written & set(defaults), "config.yaml repeats a default of the schema"
    assert written == set(schema["required"])
    assert set(defaults) | written == _settings(default_config())


def test_the_schema_allows_exactly_the_kernels_had_sizes():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert tuple(schema["properties"]["had_sizes"]["items"]["enum"]) == HAD_SIZES


def test_a_bench_job_builds_its_settings_from_the_params_by_name():
    params = cfg.bench_params(default_config(), "cuda")
    fields = {field.name for field in dataclasses.fields(SweepSettings)}
    assert fields == {"N", "K", *params}
    settings = SweepSettings.from_params(8192, 1024, params)
    assert settings.batch_sizes == tuple(params["batch_sizes"])
    assert (settings.rep_ms, settings.seed) == (params["rep_ms"], params["seed"])
    # Unset, the kernel tuner keeps its own default; set, it is a bench param like any other.
    assert settings.tuning_rep_ms is None
    config = default_config()
    config["timing"]["tuning_rep_ms"] = 20
    assert cfg.bench_params(config, "cuda")["tuning_rep_ms"] == 20


def test_default_config_reproduces_the_seed():
    config = default_config()
    cfg.check_schema(config, SCHEMA)
    assert config["models"] == ["meta-llama/Llama-3.3-70B-Instruct"]
    assert config["tp_sizes"] == [1] and config["had_sizes"] == [16, 32, 64, 128]
    assert config["batch_sizes"][0] == 1 and config["batch_sizes"][-1] == 32768
    assert len(config["batch_sizes"]) == 16
    assert config["providers"][:3] == ["torch-bf16", "nvfp4", "nvfp4-noquant"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, "unknown key 'bogus' in config"),
        ({"timing": {"method": "cudagraph", "typo": 1}}, "unknown key 'typo' in timing"),
        ({"had_sizes": [16, 24]}, "had_sizes[1]: 24 is not one of"),
        ({"had_sizes": [256]}, "had_sizes[0]: 256 is not one of"),
        ({"batch_sizes": []}, "batch_sizes: [] should be non-empty"),
        ({"models": []}, "models: [] should be non-empty"),
        ({"tp_sizes": [0]}, "tp_sizes[0]: 0 is less than the minimum of 1"),
        ({"tp_sizes": ["two"]}, "tp_sizes[0]: 'two' is not of type 'integer'"),
        ({"timing": {"method": "fast"}}, "timing.method: 'fast' is not one of"),
        ({"device": "tpu"}, "device: 'tpu' is not one of"),
    ],
)
def test_schema_errors_are_one_line_naming_the_value(change, message):
    config = default_config() | change
    with pytest.raises(cfg.ConfigError) as error:
        cfg.check_schema(config, SCHEMA)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_command_line_strings_become_numbers():
    # Snakemake's --config hands list items over as strings.
    config = default_config() | {"batch_sizes": ["1", "64"], "timing": {"rep_ms": "50"}}
    cfg.check_schema(config, SCHEMA)
    assert config["batch_sizes"] == [1, 64] and config["timing"]["rep_ms"] == 50


def test_unknown_provider_names_it():
    with pytest.raises(cfg.ConfigError, match="unknown provider 'nvfp5'"):
        cfg.check_providers({"providers": ["torch-bf16", "nvfp5"]})


def test_cpu_caps_batch_sizes_and_uses_cpu_repetitions():
    config = default_config()
    cpu, gpu = cfg.bench_params(config, "cpu"), cfg.bench_params(config, "cuda")
    assert cpu["batch_sizes"] == [1, 4, 8, 16]
    assert gpu["batch_sizes"] == sorted(config["batch_sizes"])
    assert cpu["rep_ms"] == config["cpu"]["rep_ms"] and gpu["rep_ms"] == config["timing"]["rep_ms"]


@pytest.mark.parametrize(
    ("setting", "method", "device", "matters"),
    [("warmup_ms", "cudagraph", "cuda", False), ("warmup_ms", "cold-l2", "cuda", True),
     ("warmup_ms", "both", "cuda", True), ("warmup_ms", "cold-l2", "cpu", False),
     ("cold_l2_max_batch_size", "both", "cuda", True),
     ("cold_l2_max_batch_size", "cold-l2", "cuda", False),
     ("cold_l2_max_batch_size", "both", "cpu", False)],
)  # fmt: skip
def test_cold_l2_settings_are_rerun_triggers_only_where_a_timer_uses_them(
    setting, method, device, matters
):
    config = default_config()
    base = {**config, "timing": {**config["timing"], "method": method}}
    changed = {**base, "timing": {**base["timing"], setting: 99}}
    same = cfg.bench_params(base, device) == cfg.bench_params(changed, device)
    assert same != matters


def test_timing_method_both_is_known_and_cudagraph_stays_the_default():
    config = default_config()
    assert config["timing"]["method"] == "cudagraph"
    assert config["timing"]["cold_l2_max_batch_size"] == 256
    bad = default_config() | {"timing": {"method": "warm-and-cold"}}
    with pytest.raises(cfg.ConfigError, match=r"timing.method: 'warm-and-cold' is not one of"):
        cfg.check_schema(bad, SCHEMA)


def test_model_with_k_not_multiple_of_16_is_refused(tmp_path):
    from pipeline_helpers import tiny_llama

    model = tiny_llama(tmp_path / "odd", hidden=256, intermediate=520)
    with pytest.raises(cfg.ConfigError, match=r"down_proj at tp=1 has K=520, not a multiple of 16"):
        cfg.check_models({"models": [model], "tp_sizes": [1]})


def test_model_keys_are_folder_names():
    assert (
        cfg.model_key("meta-llama/Llama-3.3-70B-Instruct") == "meta-llama--Llama-3.3-70B-Instruct"
    )


def test_the_schema_allows_exactly_the_numerics_formats():
    from nvfp4bench.numerics import FORMATS

    schema = yaml.safe_load(SCHEMA.read_text())
    assert tuple(schema["properties"]["formats"]["items"]["enum"]) == FORMATS
    assert schema["properties"]["formats"]["default"] == [FORMATS[0]]


def test_each_format_job_times_its_providers_and_one_of_them_the_baseline():
    """The NVFP4 job's providers do not change when MXFP4 is added (so it does not re-run), and
    the baseline stays in it; with MXFP4 alone, the MXFP4 job times the baseline."""
    config = default_config()
    nvfp4_alone = cfg.bench_params(config, "cuda", "nvfp4")["providers"]
    assert nvfp4_alone[0] == "torch-bf16" and not any(p.startswith("mxfp4") for p in nvfp4_alone)
    both = dict(config, formats=["mxfp4", "nvfp4"])
    cfg.check_providers(both)
    assert cfg.bench_params(both, "cuda", "nvfp4")["providers"] == nvfp4_alone
    mx = cfg.bench_params(both, "cuda", "mxfp4")["providers"]
    assert mx == ["mxfp4", "mxfp4-noquant", "mxfp4-triton", "mxfp4-triton-noquant"]
    alone = cfg.bench_params(dict(config, formats=["mxfp4"]), "cuda", "mxfp4")["providers"]
    assert alone == ["torch-bf16", *mx]
    assert cfg.accuracy_params(both, "mxfp4")["fmt"] == "mxfp4"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"formats": ["mxfp8"]}, "config: formats[0]: 'mxfp8' is not one of ['nvfp4', 'mxfp4']"),
        (
            {"formats": ["nvfp4", "mxfp4"], "providers": ["torch-bf16", "nvfp4-triton"]},
            "config: formats has 'mxfp4' but providers names none of its providers (mxfp4, "
            "mxfp4-noquant, mxfp4-triton, mxfp4-triton-noquant)",
        ),
    ],
)
def test_a_bad_format_is_one_line(change, message):
    config = dict(yaml.safe_load((ROOT / "config.yaml").read_text()), **change)
    with pytest.raises(cfg.ConfigError) as error:
        cfg.check_schema(config, SCHEMA)
        cfg.check_providers(config)
    assert str(error.value) == message
