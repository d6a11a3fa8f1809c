"""Layer-shape extraction against vLLM's weight_shapes table, TP splits, MoE, MLA and errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from nvfp4bench import shapes
from nvfp4bench.models import ModelConfigError, bundled_models, load_model_config, model_shapes
from nvfp4bench.shapes import LayerShape, ShapeError, layer_shapes, unique_shapes


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# vLLM benchmarks/kernels/weight_shapes.py, TP1: layer -> ([K, N], tp_split_dim), where split dim 1
# is column-parallel (N / tp) and 0 row-parallel (K / tp). The layer names are ours; the numbers
# are copied from vLLM, an independent source.
def _dense(k_qkv, n_qkv, k_o, n_o, n_gate_up, k_down):
    return {
        "qkv_proj": ([k_qkv, n_qkv], 1),
        "o_proj": ([k_o, n_o], 0),
        "gate_up_proj": ([k_qkv, n_gate_up], 1),
        "down_proj": ([k_down, n_o], 0),
    }


WEIGHT_SHAPES = {
    "mistralai/Mistral-7B-v0.1": _dense(4096, 6144, 4096, 4096, 28672, 14336),
    "meta-llama/Llama-3-8b": _dense(4096, 6144, 4096, 4096, 28672, 14336),
    "meta-llama/Llama-3.1-8B-Instruct": _dense(4096, 6144, 4096, 4096, 28672, 14336),
    "meta-llama/Llama-2-7b-hf": _dense(4096, 12288, 4096, 4096, 22016, 11008),
    "meta-llama/Llama-2-13b-hf": _dense(5120, 15360, 5120, 5120, 27648, 13824),
    "meta-llama/Llama-2-70b-hf": _dense(8192, 10240, 8192, 8192, 57344, 28672),
    "meta-llama/Llama-3.3-70B-Instruct": _dense(8192, 10240, 8192, 8192, 57344, 28672),
    "meta-llama/Llama-3.1-405b-hf": _dense(16384, 18432, 16384, 16384, 106496, 53248),
    "mistralai/Mistral-Large-Instruct-2407": _dense(12288, 14336, 12288, 12288, 57344, 28672),
    "Qwen/Qwen2.5-7B-Instruct": _dense(3584, 4608, 3584, 3584, 37888, 18944),
    "Qwen/Qwen2.5-32B-Instruct": _dense(5120, 7168, 5120, 5120, 55296, 27648),
    "Qwen/Qwen2.5-72B-Instruct": _dense(8192, 10240, 8192, 8192, 59136, 29568),
    "CohereLabs/c4ai-command-a-03-2025": _dense(12288, 14336, 12288, 12288, 73728, 36864),
    "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct": {
        "q_proj": ([2048, 3072], 1),
        "kv_b_proj": ([2048, 4096], 1),
        "o_proj": ([2048, 2048], 0),
        "kv_a_proj_with_mqa": ([2048, 576], 0),
        "gate_up_proj": ([2048, 21888], 1),
        "down_proj": ([10944, 2048], 0),
        "experts.gate_up_proj": ([2048, 2816], 1),
        "experts.down_proj": ([1408, 2048], 0),
    },
}

# Where we follow vLLM's model code rather than weight_shapes.py:
# * kv_b_proj is ColumnParallelLinear(kv_lora_rank, heads*(qk_nope+v_head)): K is kv_lora_rank
#   (512), not hidden_size (the table's 2048).
# * kv_a_proj_with_mqa is a ReplicatedLinear: never split (the table says row-parallel).
# * DeepSeek's shared experts (2 x 1408 -> a 2816-wide dense MLP) are missing from the table.
CORRECTIONS = {
    "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct": {"kv_b_proj": ([512, 4096], 1)},
}
REPLICATED = {"kv_a_proj_with_mqa", "fused_qkv_a_proj"}
EXTRA_LAYERS = {
    "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct": {
        "shared_experts.gate_up_proj": ([2048, 5632], 1),
        "shared_experts.down_proj": ([2816, 2048], 0),
    },
}


def _expected(model_id: str, tp: int) -> dict[str, tuple[int, int]]:
    """layer -> (N, K) on one of tp ranks, from the table (plain split, no KV replication)."""
    table = WEIGHT_SHAPES[model_id] | CORRECTIONS.get(model_id, {}) | EXTRA_LAYERS.get(model_id, {})
    out = {}
    for layer, ([k, n], split_dim) in table.items():
        if layer not in REPLICATED:
            if split_dim == 1:
                n //= tp
            else:
                k //= tp
        out[layer] = (n, k)
    return out


def _by_layer(df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    assert not df.duplicated(["layer"]).any()
    return {r.layer: (r.N, r.K) for r in df.itertuples()}


def _cfg(**fields) -> SimpleNamespace:
    return SimpleNamespace(**fields)


def _llama(**over) -> SimpleNamespace:
    fields = dict(
        model_type="llama",
        hidden_size=1024,
        intermediate_size=4096,
        num_attention_heads=16,
        num_key_value_heads=4,
        head_dim=64,
        num_hidden_layers=2,
    )
    return _cfg(**(fields | over))


# --- against vLLM's table ---------------------------------------------------------------------


def test_every_bundled_weight_shapes_model_is_covered():
    assert set(WEIGHT_SHAPES) <= set(bundled_models())


@pytest.mark.parametrize("model_id", sorted(WEIGHT_SHAPES))
def test_tp1_matches_vllm_weight_shapes(model_id):
    df = model_shapes(model_id, 1)
    assert list(df.columns) == ["model", "tp", "layer", "N", "K", "count"]
    assert (df["model"] == model_id).all() and (df["tp"] == 1).all()
    # Dense models: every layer once per decoder layer.
    # Attention runs once per decoder layer (MLP counts depend on MoE layouts: tested below).
    layers = load_model_config(model_id).num_hidden_layers
    attention = df[~df["layer"].str.contains("gate_up|down")]
    assert len(attention) and (attention["count"] == layers).all()
    assert _by_layer(df) == _expected(model_id, 1)


@pytest.mark.parametrize("tp", [2, 4, 8])
@pytest.mark.parametrize("model_id", sorted(WEIGHT_SHAPES))
def test_tp_splits_match_vllm_weight_shapes(model_id, tp):
    config = load_model_config(model_id)
    if config.num_attention_heads % tp:  # Qwen2.5-7B: 28 heads at tp=8
        with pytest.raises(ShapeError, match=f"not divisible by tp={tp}"):
            model_shapes(model_id, tp)
        return
    # None of these replicate KV heads at tp <= 8 (all have >= 8 KV heads, or 4 with tp <= 4).
    assert _by_layer(model_shapes(model_id, tp)) == _expected(model_id, tp)


def test_model_shapes_dtypes():
    df = model_shapes("meta-llama/Llama-3.1-8B-Instruct", 2)
    assert df["N"].dtype == "int64" and df["K"].dtype == "int64" and df["tp"].dtype == "int64"
    assert df["layer"].tolist() == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]


# --- dense / GQA ------------------------------------------------------------------------------


def test_explicit_head_dim_qwen3():
    # 64 heads x 128 = 8192 != hidden 5120: q/o use heads*head_dim, not hidden.
    got = _by_layer(model_shapes("Qwen/Qwen3-32B", 4))
    assert got == {
        "qkv_proj": ((16 + 2 * 2) * 128, 5120),
        "o_proj": (5120, 8192 // 4),
        "gate_up_proj": (2 * 25600 // 4, 5120),
        "down_proj": (5120, 25600 // 4),
    }


def test_kv_heads_replicated_when_tp_exceeds_them():
    # Llama-3-8B: 32 q heads, 8 KV heads. tp=16: 2 q heads and 1 (replicated) KV head per rank;
    # a plain split of 6144 would give 384.
    got = _by_layer(model_shapes("meta-llama/Llama-3-8b", 16))
    assert got["qkv_proj"] == ((2 + 2) * 128, 4096)
    assert got["o_proj"] == (4096, 256)
    assert got["gate_up_proj"] == (28672 // 16, 4096)
    assert got["down_proj"] == (4096, 14336 // 16)

    # synthetic: 16 heads, 4 KV heads, tp=8 -> 2 q heads + 1 KV head per rank
    got = {s.layer: (s.N, s.K) for s in layer_shapes(_llama(), "synthetic", 8)}
    assert got["qkv_proj"] == ((2 + 2) * 64, 1024)
    # tp == kv: exactly one KV head per rank, no replication
    got = {s.layer: (s.N, s.K) for s in layer_shapes(_llama(), "synthetic", 4)}
    assert got["qkv_proj"] == ((4 + 2) * 64, 1024)


def test_kv_heads_that_cannot_be_split_or_replicated():
    # 4 KV heads, tp=8 fine (replicated); 6 KV heads at tp=4: neither 6 % 4 nor 4 % 6
    with pytest.raises(ShapeError, match="num_key_value_heads=6 is not divisible by tp=4"):
        layer_shapes(_llama(num_attention_heads=24, num_key_value_heads=6), "syn", 4)
    # 3 KV heads at tp=4 (tp > kv): 4 % 3 != 0
    with pytest.raises(ShapeError, match="tp=4 is not divisible by num_key_value_heads=3"):
        layer_shapes(_llama(num_attention_heads=12, num_key_value_heads=3), "syn", 4)


def test_head_dim_falls_back_to_hidden_over_heads():
    got = {s.layer: (s.N, s.K) for s in layer_shapes(_llama(head_dim=None), "syn", 1)}
    assert got["qkv_proj"] == ((16 + 8) * 64, 1024)


def test_mha_without_kv_field():
    cfg = _llama(num_key_value_heads=None)
    got = {s.layer: (s.N, s.K) for s in layer_shapes(cfg, "syn", 2)}
    assert got["qkv_proj"] == (3 * 8 * 64, 1024)


# --- MoE --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_qwen3_moe(tp):
    # 32 q heads, 4 KV heads, head_dim 128; 128 experts of 768; every layer is MoE.
    got = _by_layer(model_shapes("Qwen/Qwen3-30B-A3B", tp))
    kv = max(1, 4 // tp)
    assert got == {
        "qkv_proj": ((32 // tp + 2 * kv) * 128, 2048),
        "o_proj": (2048, 4096 // tp),
        "experts.gate_up_proj": (2 * 768 // tp, 2048),
        "experts.down_proj": (2048, 768 // tp),
    }


def test_qwen3_moe_dense_layers_and_sparse_step():
    base = dict(
        model_type="qwen3_moe",
        hidden_size=512,
        intermediate_size=2048,
        moe_intermediate_size=128,
        num_experts=8,
        num_experts_per_tok=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        num_hidden_layers=4,
    )
    layers = [s.layer for s in layer_shapes(_cfg(**base, mlp_only_layers=[0]), "syn", 2)]
    counts = {s.layer: s.count for s in layer_shapes(_cfg(**base, mlp_only_layers=[0]), "syn", 2)}
    # 4 decoder layers: one dense MLP, three MoE layers of which each token visits 2 experts.
    assert counts == {
        "qkv_proj": 4,
        "o_proj": 4,
        "gate_up_proj": 1,
        "down_proj": 1,
        "experts.gate_up_proj": 6,
        "experts.down_proj": 6,
    }
    assert layers == [
        "qkv_proj",
        "o_proj",
        "gate_up_proj",
        "down_proj",
        "experts.gate_up_proj",
        "experts.down_proj",
    ]
    got = {s.layer: (s.N, s.K) for s in layer_shapes(_cfg(**base, decoder_sparse_step=2), "syn", 2)}
    assert got["gate_up_proj"] == (2048, 512) and got["experts.gate_up_proj"] == (128, 512)
    # no MoE layer at all -> no experts
    only_dense = _cfg(**base, mlp_only_layers=[0, 1, 2, 3])
    assert "experts.gate_up_proj" not in {s.layer for s in layer_shapes(only_dense, "syn", 1)}


def test_mixtral_and_qwen2_moe():
    mixtral = _llama(
        model_type="mixtral", num_local_experts=8, num_experts_per_tok=2, intermediate_size=14336
    )
    got = {s.layer: (s.N, s.K) for s in layer_shapes(mixtral, "syn", 2)}
    assert got["experts.gate_up_proj"] == (14336, 1024) and "gate_up_proj" not in got
    counts = {s.layer: s.count for s in layer_shapes(mixtral, "syn", 2)}
    assert counts["experts.down_proj"] == 2 * 2  # 2 decoder layers x top-2

    qwen2_moe = _llama(
        model_type="qwen2_moe",
        moe_intermediate_size=1408,
        shared_expert_intermediate_size=5632,
        num_experts=60,
        num_experts_per_tok=4,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    )
    got = {s.layer: (s.N, s.K) for s in layer_shapes(qwen2_moe, "syn", 4)}
    assert got["shared_experts.gate_up_proj"] == (2 * 5632 // 4, 1024)
    assert got["shared_experts.down_proj"] == (1024, 5632 // 4)
    assert got["experts.down_proj"] == (1024, 1408 // 4)
    counts = {s.layer: s.count for s in layer_shapes(qwen2_moe, "syn", 4)}
    assert counts["shared_experts.down_proj"] == 2 and counts["experts.down_proj"] == 2 * 4


def test_deepseek_v3_counts_per_forward_pass():
    """61 decoder layers: the first 3 dense, 58 MoE with one shared expert MLP and top-8 routing."""
    counts = model_shapes("deepseek-ai/DeepSeek-V3", 1).set_index("layer")["count"].to_dict()
    assert counts["o_proj"] == counts["kv_b_proj"] == 61
    assert counts["gate_up_proj"] == counts["down_proj"] == 3
    assert counts["shared_experts.gate_up_proj"] == 58
    assert counts["experts.gate_up_proj"] == counts["experts.down_proj"] == 58 * 8


# --- MLA (DeepSeek) ---------------------------------------------------------------------------


@pytest.mark.parametrize("tp", [1, 2, 4, 8, 16])
def test_deepseek_v2_lite_mla_without_q_lora(tp):
    got = _by_layer(model_shapes("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", tp))
    assert got == {
        "q_proj": (16 * 192 // tp, 2048),
        "kv_a_proj_with_mqa": (512 + 64, 2048),  # replicated
        "kv_b_proj": (16 * 256 // tp, 512),
        "o_proj": (2048, 16 * 128 // tp),
        "gate_up_proj": (2 * 10944 // tp, 2048),  # first_k_dense_replace=1
        "down_proj": (2048, 10944 // tp),
        "shared_experts.gate_up_proj": (2 * 2 * 1408 // tp, 2048),
        "shared_experts.down_proj": (2048, 2 * 1408 // tp),
        "experts.gate_up_proj": (2 * 1408 // tp, 2048),
        "experts.down_proj": (2048, 1408 // tp),
    }


@pytest.mark.parametrize("tp", [1, 8, 16])
def test_deepseek_v3_mla_with_q_lora(tp):
    df = model_shapes("deepseek-ai/DeepSeek-V3", tp)
    got = _by_layer(df)
    assert got == {
        # vLLM fuses q_a_proj and kv_a_proj_with_mqa into one replicated GEMM
        "fused_qkv_a_proj": (1536 + 512 + 64, 7168),
        "q_b_proj": (128 * 192 // tp, 1536),
        "kv_b_proj": (128 * 256 // tp, 512),
        "o_proj": (7168, 128 * 128 // tp),
        "gate_up_proj": (2 * 18432 // tp, 7168),  # first 3 layers are dense
        "down_proj": (7168, 18432 // tp),
        "shared_experts.gate_up_proj": (2 * 2048 // tp, 7168),
        "shared_experts.down_proj": (7168, 2048 // tp),
        "experts.gate_up_proj": (2 * 2048 // tp, 7168),
        "experts.down_proj": (7168, 2048 // tp),
    }
    # shared and routed experts have equal shapes, but are different layers: both stay
    assert len(df) == 10


def test_deepseek_all_moe_has_no_dense_mlp():
    cfg = load_model_config("deepseek-ai/DeepSeek-V3")
    cfg.first_k_dense_replace = 0
    layers = {s.layer for s in layer_shapes(cfg, "dsv3-all-moe", 8)}
    assert "gate_up_proj" not in layers and "experts.gate_up_proj" in layers


def test_deepseek_too_many_ranks():
    with pytest.raises(ShapeError, match="num_attention_heads=16 is not divisible by tp=32"):
        model_shapes("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", 32)


# --- errors -----------------------------------------------------------------------------------


def test_non_dividing_tp_names_model_layer_and_tp():
    with pytest.raises(ShapeError) as err:
        model_shapes("meta-llama/Llama-3.3-70B-Instruct", 3)
    msg = str(err.value)
    assert msg.startswith("meta-llama/Llama-3.3-70B-Instruct: qkv_proj ")
    assert "tp=3" in msg and "\n" not in msg

    cfg = _llama(intermediate_size=1000)
    with pytest.raises(ShapeError, match="^syn: gate_up_proj intermediate=1000 .* tp=16$"):
        layer_shapes(cfg, "syn", 16)
    cfg = _llama(num_attention_heads=16, head_dim=60, num_key_value_heads=16)
    assert layer_shapes(cfg, "syn", 16)  # 16*60 splits over 16


@pytest.mark.parametrize("tp", [0, -2, 1.5, True, "2", None])
def test_tp_must_be_positive_int(tp):
    with pytest.raises(ShapeError, match="tp must be a positive int"):
        layer_shapes(_llama(), "syn", tp)
    with pytest.raises(ShapeError, match="tp must be a positive int"):
        model_shapes("meta-llama/Llama-3-8b", tp)


def test_numpy_int_tp_is_fine():
    np = pytest.importorskip("numpy")
    assert layer_shapes(_llama(), "syn", np.int64(2))[0].tp == 2


def test_missing_field_names_model_and_field():
    cfg = _llama()
    del cfg.intermediate_size
    with pytest.raises(ShapeError, match="^syn: config has no 'intermediate_size'$"):
        layer_shapes(cfg, "syn", 1)

    fields = load_model_config("deepseek-ai/DeepSeek-V3").to_dict()
    del fields["kv_lora_rank"]
    cfg = _cfg(**fields)
    with pytest.raises(ShapeError, match="^dsv3: config has no 'kv_lora_rank'$"):
        layer_shapes(cfg, "dsv3", 1)

    mla = _cfg(
        model_type="deepseek_v2",
        hidden_size=64,
        num_attention_heads=2,
        num_hidden_layers=1,
        kv_lora_rank=16,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=8,
    )
    with pytest.raises(ShapeError, match="no 'q_lora_rank'"):
        layer_shapes(mla, "syn", 1)


def test_bad_field_value_and_unsupported_model_type():
    with pytest.raises(ShapeError, match="hidden_size=0 is not a positive int"):
        layer_shapes(_llama(hidden_size=0), "syn", 1)
    with pytest.raises(ShapeError, match="^syn: model_type 'gpt2' is not supported"):
        layer_shapes(_cfg(model_type="gpt2"), "syn", 1)


# --- dedup / unique_shapes --------------------------------------------------------------------


@pytest.mark.parametrize("model_id", sorted(bundled_models()))
def test_no_duplicate_layers(model_id):
    df = model_shapes(model_id, 2 if model_id != "Qwen/Qwen2.5-7B-Instruct" else 4)
    assert not df.duplicated(["layer", "N", "K"]).any()
    assert all(isinstance(s, LayerShape) for s in layer_shapes(load_model_config(model_id), "x", 1))


def test_unique_shapes_merges_users():
    tables = [
        model_shapes("meta-llama/Llama-3-8b", 1),
        model_shapes("mistralai/Mistral-7B-v0.1", 1),
        model_shapes("meta-llama/Llama-3.1-8B-Instruct", 2),
        model_shapes("meta-llama/Llama-2-70b-hf", 8),
    ]
    u = unique_shapes(tables)
    assert list(u.columns) == ["N", "K", "users"]
    assert u["N"].dtype == "int64" and u["K"].dtype == "int64"
    assert list(zip(u["N"], u["K"], strict=True)) == sorted(zip(u["N"], u["K"], strict=True))
    assert not u.duplicated(["N", "K"]).any()
    users = {(n, k): s for n, k, s in u.itertuples(index=False)}
    assert users[(6144, 4096)] == (
        "meta-llama/Llama-3-8b:qkv_proj; mistralai/Mistral-7B-v0.1:qkv_proj"
    )
    # Llama-2-70B at tp=8: 8 q + 1 KV heads: (8 + 2) * 128 = 1280
    assert users[(1280, 8192)] == "meta-llama/Llama-2-70b-hf:qkv_proj@tp8"
    # Llama-3.1-8B tp2 o_proj [4096, 2048] and down_proj K=7168 are its own
    assert users[(4096, 2048)] == "meta-llama/Llama-3.1-8B-Instruct:o_proj@tp2"
    # one shape, two layers of one model
    ds = unique_shapes([model_shapes("deepseek-ai/DeepSeek-V3", 1)])
    row = ds[(ds["N"] == 4096) & (ds["K"] == 7168)]
    assert row["users"].item() == (
        "deepseek-ai/DeepSeek-V3:experts.gate_up_proj; "
        "deepseek-ai/DeepSeek-V3:shared_experts.gate_up_proj"
    )
    total = sum(len(t) for t in tables)
    assert len(u) < total


def test_unique_shapes_empty():
    u = unique_shapes([])
    assert list(u.columns) == ["N", "K", "users"] and len(u) == 0
    u = unique_shapes([model_shapes("meta-llama/Llama-3-8b", 1).iloc[0:0]])
    assert len(u) == 0


# --- model families ---------------------------------------------------------------------------


def test_each_model_type_has_one_family_known_to_transformers():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    types = [t for family in shapes.FAMILIES for t in family.model_types]
    assert len(types) == len(set(types)), "a model type in two families"
    assert all(t in CONFIG_MAPPING for t in types), "a model type transformers cannot load"
    assert all(shapes.family_of(t).required_keys for t in types)


@pytest.mark.parametrize("model_id", sorted(bundled_models()))
def test_a_family_requires_every_key_its_extractor_needs(model_id, monkeypatch):
    """The keys that reading a bundled model's layers needs are the keys its config.json must
    state: a key read but not required could come silently from a transformers default."""
    needed = set()
    read = shapes.Extractor.dim

    def recording(self, field, *, optional=False):
        if not optional:
            needed.add(field)
        return read(self, field, optional=optional)

    monkeypatch.setattr(shapes.Extractor, "dim", recording)
    config = load_model_config(model_id)
    layer_shapes(config, model_id, 1)
    assert needed <= set(shapes.family_of(config.model_type).required_keys)


def _toy_extract(ex: shapes.Extractor) -> None:
    """A throwaway family: the dense layers, and the MLP twice per decoder layer."""
    ex.gqa_attention()
    ex.mlp("", ex.dim("intermediate_size"), 2 * ex.dim("num_hidden_layers"))


def test_a_model_family_is_one_table_entry_plus_its_extractor(tmp_path, monkeypatch):
    folder = tmp_path / "toy"
    folder.mkdir()
    raw = {"model_type": "olmo", "hidden_size": 256, "intermediate_size": 512,
           "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 3}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ShapeError, match="model_type 'olmo' is not supported"):
        model_shapes(str(folder), 1)

    toy = shapes.ModelFamily(
        frozenset({"olmo"}), ("hidden_size", "intermediate_size", "num_hidden_layers"), _toy_extract
    )
    monkeypatch.setattr(shapes, "FAMILIES", (*shapes.FAMILIES, toy))
    got = model_shapes(str(folder), 2).set_index("layer")[["N", "K", "count"]].T.to_dict("list")
    assert got == {
        "qkv_proj": [(2 + 2 * 1) * 64, 256, 3],
        "o_proj": [256, 128, 3],
        "gate_up_proj": [512, 256, 6],
        "down_proj": [256, 256, 6],
    }
    # Its required keys are checked when the config is loaded.
    del raw["intermediate_size"]
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelConfigError, match="no 'intermediate_size' \\(needed for olmo"):
        model_shapes(str(folder), 1)
