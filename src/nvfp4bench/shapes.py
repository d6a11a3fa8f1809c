"""The GEMM shapes of one decoder layer, per tensor-parallel rank, as vLLM builds its linears.

A :class:`LayerShape` is the weight of one linear on one rank: ``Y[M, N] = X[M, K] @ W[N, K]^T``.
M (tokens) is the benchmark's sweep axis; N and K come from the model config and the TP degree:

* column-parallel linears (qkv_proj, gate_up_proj, q_proj, q_b_proj, kv_b_proj) split N by tp;
* row-parallel linears (o_proj, down_proj) split K by tp;
* replicated linears (DeepSeek's kv_a_proj_with_mqa / fused_qkv_a_proj) are not split.

``FAMILIES`` says which ``model_type``s are supported: per family, its model types, the
config.json keys it needs and its extractor. The layers (vLLM module names; fused where vLLM
fuses):

* dense GQA: qkv_proj, o_proj, gate_up_proj, down_proj. QKVParallelLinear replicates KV heads when
  tp > num_key_value_heads (one KV head per rank, tp % kv == 0), else splits them (kv % tp == 0).
* MoE (Mixtral, Qwen-MoE, DeepSeek): vLLM's FusedMoE without expert parallelism
  splits every expert's intermediate dim by tp: experts.gate_up_proj N = 2*I/tp,
  experts.down_proj K = I/tp. Shared experts (DeepSeek, Qwen2-MoE) are a dense MLP sharded like
  one: shared_experts.gate_up_proj / shared_experts.down_proj. Layers that are not MoE
  (DeepSeek's first_k_dense_replace, Qwen's mlp_only_layers / decoder_sparse_step) add the
  dense gate_up_proj / down_proj with intermediate_size.
* MLA (DeepSeek-V2/V3), as vLLM's DeepseekV2MLAAttention: with q_lora_rank,
  fused_qkv_a_proj (replicated, N = q_lora_rank + kv_lora_rank + qk_rope_head_dim) then
  q_b_proj (column, K = q_lora_rank); without it, q_proj (column) and kv_a_proj_with_mqa
  (replicated, N = kv_lora_rank + qk_rope_head_dim). kv_b_proj is column-parallel with
  K = kv_lora_rank (vLLM's benchmarks/kernels/weight_shapes.py lists K = hidden_size there, which
  is not the weight's shape); o_proj is row-parallel with K = heads*v_head_dim/tp. In decode
  vLLM absorbs kv_b_proj into per-head BMMs; the GEMM is what prefill runs.

Routers/gates (N = number of experts, or 1) and lm_head are not part of the table.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import pandas as pd

COLUMNS = ["model", "tp", "layer", "N", "K", "count"]
# What unique_shapes needs (tables written before `count` existed still work).
KEY_COLUMNS = ["model", "tp", "layer", "N", "K"]
UNIQUE_COLUMNS = ["N", "K", "users"]

_MISSING = object()


@dataclass(frozen=True)
class LayerShape:
    """One linear of one decoder layer on one TP rank: weight [N, K]. ``count``: how many times
    this GEMM runs on one rank in one forward pass (over all decoder layers; routed experts count
    top-k times per MoE layer, the experts each token visits)."""

    model: str
    tp: int
    layer: str
    N: int
    K: int
    count: int


class ShapeError(ValueError):
    """A shape cannot be derived: bad tp, a dim tp does not divide, a missing field (one line)."""


class TPSplitError(ShapeError):
    """A layer of the model cannot be split over this tensor-parallel size."""


def layer_shapes(config: Any, model_id: str, tp: int) -> list[LayerShape]:
    """The linear layers of one decoder layer of ``config`` on one of ``tp`` ranks.

    Identical (layer, N, K) are listed once; the order is attention, dense MLP, shared experts,
    routed experts.
    """
    tp = _check_tp(model_id, tp)
    model_type = getattr(config, "model_type", None)
    family = family_of(model_type)
    if family is None:
        supported = ", ".join(sorted(t for f in FAMILIES for t in f.model_types))
        raise ShapeError(
            f"{model_id}: model_type {model_type!r} is not supported (supported: {supported})"
        )
    extractor = Extractor(config, model_id, tp)
    family.extract(extractor)
    return extractor.result()


def shapes_frame(shapes: Iterable[LayerShape]) -> pd.DataFrame:
    """LayerShapes as a DataFrame with columns model, tp, layer, N, K (ints for tp, N, K)."""
    df = pd.DataFrame([asdict(s) for s in shapes], columns=COLUMNS)
    return df.astype({"model": str, "tp": "int64", "layer": str, "N": "int64", "K": "int64"})


def unique_shapes(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per distinct (N, K) over ``tables`` (frames of ``models.model_shapes``), sorted by
    (N, K), with ``users``: the sorted, "; "-joined "model:layer" that have it, suffixed "@tpX"
    where tp > 1."""
    frames = [t for t in tables if len(t)]
    for t in frames:
        missing = [c for c in KEY_COLUMNS if c not in t.columns]
        if missing:
            raise ShapeError(f"unique_shapes: a table lacks column(s) {', '.join(missing)}")
    if not frames:
        return pd.DataFrame(
            {
                "N": pd.Series(dtype="int64"),
                "K": pd.Series(dtype="int64"),
                "users": pd.Series(dtype=str),
            }
        )
    df = pd.concat([t[KEY_COLUMNS] for t in frames], ignore_index=True)
    tps = df["tp"].astype("int64")
    suffix = tps.map(lambda t: f"@tp{t}" if t > 1 else "")
    df = df.assign(
        N=df["N"].astype("int64"),
        K=df["K"].astype("int64"),
        user=df["model"].astype(str) + ":" + df["layer"].astype(str) + suffix,
    )
    out = (
        df.groupby(["N", "K"], sort=True)["user"]
        .agg(lambda users: "; ".join(sorted(set(users))))
        .reset_index()
        .rename(columns={"user": "users"})
    )
    return out[UNIQUE_COLUMNS].reset_index(drop=True)


# --- extraction -------------------------------------------------------------------------------


def _check_tp(model_id: str, tp: Any) -> int:
    if isinstance(tp, bool) or not isinstance(tp, numbers.Integral) or tp < 1:
        raise ShapeError(f"{model_id}: tp must be a positive int, got {tp!r}")
    return int(tp)


class Extractor:
    """Reads one model config and collects its layer shapes on one rank: the checked config
    fields (``dim``, ``count``), the TP split (``split``) and the blocks that families share."""

    def __init__(self, config: Any, model_id: str, tp: int):
        self.config = config
        self.model = model_id
        self.tp = tp
        self.shapes: dict[tuple[str, int, int], LayerShape] = {}

    # helpers ----------------------------------------------------------------------------------

    def dim(self, field: str, *, optional: bool = False) -> int | None:
        """A positive int config field; None where optional and missing/null."""
        value = getattr(self.config, field, _MISSING)
        if value is _MISSING or value is None:
            if optional:
                return None
            raise ShapeError(f"{self.model}: config has no {field!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ShapeError(f"{self.model}: config {field}={value!r} is not a positive int")
        return int(value)

    def count(self, field: str, default: int) -> int:
        """A non-negative int config field (0 allowed), ``default`` where missing/null."""
        value = getattr(self.config, field, None)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ShapeError(f"{self.model}: config {field}={value!r} is not a non-negative int")
        return int(value)

    def split(self, layer: str, what: str, value: int) -> int:
        if value % self.tp:
            raise TPSplitError(
                f"{self.model}: {layer} {what}={value} is not divisible by tp={self.tp}"
            )
        return value // self.tp

    def add(self, layer: str, n: int, k: int, count: int) -> None:
        key = (layer, n, k)
        if key not in self.shapes:
            self.shapes[key] = LayerShape(self.model, self.tp, layer, n, k, count)

    def result(self) -> list[LayerShape]:
        return list(self.shapes.values())

    # blocks -----------------------------------------------------------------------------------

    def head_dim(self, hidden: int, heads: int) -> int:
        head_dim = self.dim("head_dim", optional=True)
        if head_dim is not None:
            return head_dim
        if hidden % heads:
            raise ShapeError(
                f"{self.model}: config has no 'head_dim' and hidden_size={hidden} is not "
                f"divisible by num_attention_heads={heads}"
            )
        return hidden // heads

    def gqa_attention(self) -> None:
        """QKVParallelLinear + RowParallelLinear o_proj."""
        hidden = self.dim("hidden_size")
        heads = self.dim("num_attention_heads")
        kv = self.dim("num_key_value_heads", optional=True) or heads
        head_dim = self.head_dim(hidden, heads)
        layers = self.dim("num_hidden_layers")
        q_per_rank = self.split("qkv_proj", "num_attention_heads", heads)
        if self.tp >= kv:
            # vLLM replicates KV heads: each rank holds one, tp/kv ranks share it.
            if self.tp % kv:
                raise TPSplitError(
                    f"{self.model}: qkv_proj tp={self.tp} is not divisible by "
                    f"num_key_value_heads={kv} (KV heads cannot be replicated evenly)"
                )
            kv_per_rank = 1
        else:
            kv_per_rank = self.split("qkv_proj", "num_key_value_heads", kv)
        self.add("qkv_proj", (q_per_rank + 2 * kv_per_rank) * head_dim, hidden, layers)
        self.add("o_proj", hidden, self.split("o_proj", "K", heads * head_dim), layers)

    def mlp(self, prefix: str, intermediate: int, count: int) -> None:
        """MergedColumnParallelLinear gate_up_proj + RowParallelLinear down_proj."""
        hidden = self.dim("hidden_size")
        gate_up, down = f"{prefix}gate_up_proj", f"{prefix}down_proj"
        per_rank = self.split(gate_up, "intermediate", intermediate)
        self.add(gate_up, 2 * per_rank, hidden, count)
        self.add(down, hidden, self.split(down, "K", intermediate), count)

    def experts(self, intermediate: int, moe_layers: int) -> None:
        """FusedMoE w13 / w2 of one expert on one rank (intermediate split by tp, no EP); each
        token visits num_experts_per_tok of them per MoE layer."""
        self.mlp("experts.", intermediate, moe_layers * self.dim("num_experts_per_tok"))

    def qwen_moe(self, *, shared_experts: bool) -> None:
        """Routed experts on the layers Qwen-MoE makes sparse, a dense MLP on the others, and
        (Qwen2-MoE) one shared expert per MoE layer."""
        layers = self.dim("num_hidden_layers")
        num_experts = self.dim("num_experts")
        sparse_step = self.count("decoder_sparse_step", 1) or 1
        mlp_only = set(getattr(self.config, "mlp_only_layers", None) or [])
        is_moe = [
            i not in mlp_only and num_experts > 0 and (i + 1) % sparse_step == 0
            for i in range(layers)
        ]
        moe_layers = sum(is_moe)
        if not all(is_moe):
            self.mlp("", self.dim("intermediate_size"), layers - moe_layers)
        if shared_experts:
            shared = self.count("shared_expert_intermediate_size", 0)
            if shared and any(is_moe):
                self.mlp("shared_experts.", shared, moe_layers)
        if any(is_moe):
            self.experts(self.dim("moe_intermediate_size"), moe_layers)

    def mla_attention(self) -> None:
        """vLLM's DeepseekV2MLAAttention."""
        hidden = self.dim("hidden_size")
        heads = self.dim("num_attention_heads")
        kv_lora = self.dim("kv_lora_rank")
        nope = self.dim("qk_nope_head_dim")
        rope = self.dim("qk_rope_head_dim")
        v_head = self.dim("v_head_dim")
        if not hasattr(self.config, "q_lora_rank"):
            raise ShapeError(f"{self.model}: config has no 'q_lora_rank' (null if unused)")
        q_lora = self.dim("q_lora_rank", optional=True)
        qk_head = nope + rope
        layers = self.dim("num_hidden_layers")
        if q_lora is not None:
            # q_a_proj and kv_a_proj_with_mqa fused into one replicated MergedColumnParallelLinear.
            self.add("fused_qkv_a_proj", q_lora + kv_lora + rope, hidden, layers)
            n = self.split("q_b_proj", "num_attention_heads", heads) * qk_head
            self.add("q_b_proj", n, q_lora, layers)
        else:
            n = self.split("q_proj", "num_attention_heads", heads) * qk_head
            self.add("q_proj", n, hidden, layers)
            self.add("kv_a_proj_with_mqa", kv_lora + rope, hidden, layers)
        heads_per_rank = self.split("kv_b_proj", "num_attention_heads", heads)
        self.add("kv_b_proj", heads_per_rank * (nope + v_head), kv_lora, layers)
        self.add("o_proj", hidden, self.split("o_proj", "K", heads * v_head), layers)

    def deepseek_moe(self) -> None:
        layers = self.dim("num_hidden_layers")
        n_routed = self.count("n_routed_experts", 0)
        first_dense = self.count("first_k_dense_replace", 0)
        freq = self.count("moe_layer_freq", 1) or 1
        is_moe = [bool(n_routed) and i >= first_dense and i % freq == 0 for i in range(layers)]
        moe_layers = sum(is_moe)
        if not all(is_moe):
            self.mlp("", self.dim("intermediate_size"), layers - moe_layers)
        if any(is_moe):
            moe_inter = self.dim("moe_intermediate_size")
            n_shared = self.count("n_shared_experts", 0)
            if n_shared:
                self.mlp("shared_experts.", n_shared * moe_inter, moe_layers)
            self.experts(moe_inter, moe_layers)


# --- families ---------------------------------------------------------------------------------


def _dense(ex: Extractor) -> None:
    ex.gqa_attention()
    ex.mlp("", ex.dim("intermediate_size"), ex.dim("num_hidden_layers"))


def _mixtral(ex: Extractor) -> None:
    ex.gqa_attention()
    ex.dim("num_local_experts")
    ex.experts(ex.dim("intermediate_size"), ex.dim("num_hidden_layers"))


def _qwen_moe(ex: Extractor, *, shared_experts: bool) -> None:
    ex.gqa_attention()
    ex.qwen_moe(shared_experts=shared_experts)


def _deepseek(ex: Extractor) -> None:
    ex.mla_attention()
    ex.deepseek_moe()


@dataclass(frozen=True)
class ModelFamily:
    """Model types whose layers are derived alike. `required_keys`: the config.json keys the
    extractor needs. transformers fills a missing key with its class default (for example
    Llama-2-7B's intermediate_size, or DeepSeek-V2's q_lora_rank=1536 where V2-Lite has none),
    which would give plausible but wrong shapes, so a config that lacks one is refused when it is
    loaded (``models.load_model_config``). `extract` adds the layers of one decoder layer."""

    model_types: frozenset[str]
    required_keys: tuple[str, ...]
    extract: Callable[[Extractor], None]


_ATTENTION_KEYS = ("hidden_size", "num_attention_heads", "num_hidden_layers")
_DENSE_KEYS = (*_ATTENTION_KEYS, "intermediate_size")
_QWEN_MOE_KEYS = (*_ATTENTION_KEYS, "moe_intermediate_size", "num_experts", "num_experts_per_tok")
_MLA_KEYS = (
    *_DENSE_KEYS,  # intermediate_size: the MLP of the first_k_dense_replace layers
    "q_lora_rank",  # may be null (DeepSeek-V2-Lite), but must be stated
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "moe_intermediate_size",
    "n_routed_experts",
    "n_shared_experts",
    "first_k_dense_replace",
    "num_experts_per_tok",
)
# Required keys that may be null.
NULLABLE_KEYS = frozenset({"q_lora_rank"})

# The supported model types: a type is supported by its entry here, and only here.
FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        frozenset(
            {
                "llama",
                "mistral",
                "qwen2",
                "qwen3",
                "cohere",
                "cohere2",
                "gemma",
                "gemma2",
                "phi3",
                "granite",
            }
        ),  # fmt: skip
        _DENSE_KEYS,
        _dense,
    ),
    # Mixtral's experts use intermediate_size, like a dense MLP.
    ModelFamily(
        frozenset({"mixtral"}), (*_DENSE_KEYS, "num_local_experts", "num_experts_per_tok"), _mixtral
    ),
    ModelFamily(frozenset({"qwen2_moe"}), _QWEN_MOE_KEYS, partial(_qwen_moe, shared_experts=True)),
    ModelFamily(frozenset({"qwen3_moe"}), _QWEN_MOE_KEYS, partial(_qwen_moe, shared_experts=False)),
    ModelFamily(frozenset({"deepseek_v2", "deepseek_v3"}), _MLA_KEYS, _deepseek),
)


def family_of(model_type: str | None) -> ModelFamily | None:
    """The family of `model_type`, None if it is not supported."""
    return next((f for f in FAMILIES if model_type in f.model_types), None)
