"""Bundled model configs and the config loader (no network: HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from nvfp4bench.models import (
    BUNDLED_DIR,
    ModelConfigError,
    bundled_folder,
    bundled_models,
    load_model_config,
)

EXPECTED_MODELS = {
    # vLLM benchmarks/kernels/weight_shapes.py
    "mistralai/Mistral-7B-v0.1",
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-13b-hf",
    "meta-llama/Llama-2-70b-hf",
    "meta-llama/Llama-3-8b",
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-405b-hf",
    "meta-llama/Llama-3.3-70B-Instruct",
    "mistralai/Mistral-Large-Instruct-2407",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-32B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct",
    "CohereLabs/c4ai-command-a-03-2025",
    # current ones
    "meta-llama/Llama-3.1-70B-Instruct",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B",
    "deepseek-ai/DeepSeek-V3",
}

# Architecture facts only: nothing about tokenizers, generation or remote code.
ALLOWED_KEYS = {
    "architectures",
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "num_hidden_layers",
    "vocab_size",
    "max_position_embeddings",
    "hidden_act",
    "rms_norm_eps",
    "layer_norm_eps",
    "logit_scale",
    "sliding_window",
    "tie_word_embeddings",
    "torch_dtype",
    # MoE
    "moe_intermediate_size",
    "num_experts",
    "num_experts_per_tok",
    "decoder_sparse_step",
    "mlp_only_layers",
    "norm_topk_prob",
    "n_routed_experts",
    "n_shared_experts",
    "first_k_dense_replace",
    "moe_layer_freq",
    "topk_method",
    "n_group",
    "topk_group",
    "scoring_func",
    "routed_scaling_factor",
    "num_nextn_predict_layers",
    # MLA
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def empty_hf_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _write_config(folder: Path, **config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _llama_raw() -> dict:
    return json.loads((bundled_folder("meta-llama/Llama-3-8b") / "config.json").read_text())


def test_bundled_models_are_the_expected_set():
    assert set(bundled_models()) == EXPECTED_MODELS
    assert len(bundled_models()) == len(EXPECTED_MODELS)
    for model_id in EXPECTED_MODELS:
        assert (BUNDLED_DIR / model_id.replace("/", "--") / "config.json").is_file()


@pytest.mark.parametrize("model_id", sorted(EXPECTED_MODELS))
def test_bundled_config_loads_and_is_architecture_only(model_id):
    raw = json.loads((bundled_folder(model_id) / "config.json").read_text())
    assert raw["model_type"] in CONFIG_MAPPING
    assert "auto_map" not in raw
    assert set(raw) <= ALLOWED_KEYS, set(raw) - ALLOWED_KEYS
    assert raw["architectures"] and raw["torch_dtype"] in {"bfloat16", "float16"}

    config = load_model_config(model_id)
    assert isinstance(config, PretrainedConfig)
    assert config.model_type == raw["model_type"]
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size"):
        assert getattr(config, key) == raw[key]


def test_bundled_lookup_is_case_insensitive():
    assert load_model_config("meta-llama/llama-3.1-8b-instruct").hidden_size == 4096


def test_unknown_model_offline_says_where_to_drop_a_config(empty_hf_cache):
    with pytest.raises(ModelConfigError) as err:
        load_model_config("nobody/no-such-model")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("nobody/no-such-model: ")
    assert str(BUNDLED_DIR / "nobody--no-such-model" / "config.json") in msg
    assert str(empty_hf_cache) in msg


def test_invalid_hub_id_is_one_line_error(empty_hf_cache):
    with pytest.raises(ModelConfigError, match="^bad id/x: ") as err:
        load_model_config("bad id/x")
    assert "\n" not in str(err.value)


def test_local_directory_as_model_id(tmp_path):
    folder = _write_config(tmp_path / "my-llama", **_llama_raw())
    config = load_model_config(str(folder))
    assert config.model_type == "llama" and config.intermediate_size == 14336


def test_local_directory_without_config(tmp_path):
    with pytest.raises(ModelConfigError, match="has no config.json"):
        load_model_config(str(tmp_path))
    with pytest.raises(ModelConfigError, match="no such directory"):
        load_model_config(str(tmp_path / "missing"))


def test_auto_map_is_refused(tmp_path):
    # model_type is known, so transformers alone would quietly ignore auto_map: refuse anyway.
    raw = _llama_raw() | {
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"},
    }
    folder = _write_config(tmp_path / "evil", **raw)
    (folder / "configuration_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelConfigError, match="remote code") as err:
        load_model_config(str(folder))
    assert "configuration_evil.EvilConfig" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_model_type_is_refused(tmp_path):
    folder = _write_config(tmp_path / "exotic", model_type="totally_new_arch", hidden_size=8)
    with pytest.raises(ModelConfigError, match="'totally_new_arch' is not built into"):
        load_model_config(str(folder))


def test_missing_model_type_is_refused(tmp_path):
    folder = _write_config(tmp_path / "untyped", hidden_size=8)
    with pytest.raises(ModelConfigError, match="no model_type"):
        load_model_config(str(folder))


def test_missing_required_key_is_refused_not_defaulted(tmp_path):
    raw = _llama_raw()
    del raw["intermediate_size"]
    with pytest.raises(ModelConfigError, match="no 'intermediate_size'"):
        load_model_config(str(_write_config(tmp_path / "a", **raw)))

    # DeepSeek-V2's class default q_lora_rank=1536 would silently turn V2-Lite into another model.
    raw = json.loads(
        (bundled_folder("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct") / "config.json").read_text()
    )
    del raw["q_lora_rank"]
    with pytest.raises(ModelConfigError, match="no 'q_lora_rank'"):
        load_model_config(str(_write_config(tmp_path / "b", **raw)))


def test_hf_cache_is_used_offline_and_checked(empty_hf_cache):
    snapshot = empty_hf_cache / "models--someorg--cached-llama" / "snapshots" / "abc123"
    _write_config(snapshot, **_llama_raw())
    refs = empty_hf_cache / "models--someorg--cached-llama" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    assert load_model_config("someorg/cached-llama").num_key_value_heads == 8

    _write_config(snapshot, **(_llama_raw() | {"auto_map": {"AutoConfig": "x.Y"}}))
    with pytest.raises(ModelConfigError, match="^someorg/cached-llama: .*remote code"):
        load_model_config("someorg/cached-llama")


def test_bundled_wins_over_local_lookup(tmp_path, monkeypatch):
    # A same-named relative directory must not shadow the bundled config.
    monkeypatch.chdir(tmp_path)
    shutil.copytree(bundled_folder("Qwen/Qwen3-32B"), tmp_path / "Qwen" / "Qwen3-32B")
    cfg = tmp_path / "Qwen" / "Qwen3-32B" / "config.json"
    cfg.write_text(json.dumps(json.loads(cfg.read_text()) | {"hidden_size": 8}))
    assert load_model_config("Qwen/Qwen3-32B").hidden_size == 5120


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_bad_model_id(bad):
    with pytest.raises(ModelConfigError):
        load_model_config(bad)
