"""The model hyper-parameters qcoder needs, read from a Hugging Face config.json (or built by the GGUF reader)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qcoder.errors import QcoderError

ARCHITECTURES = ("qwen2", "qwen3", "qwen3_moe")
_HF_CLASS_TO_ARCH = {"Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe"}
ROPE_TYPES = ("default", "yarn")


@dataclass
class ModelConfig:
    architecture: str  # one of ARCHITECTURES
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # dense MLP width (Qwen3-MoE: the width of its mlp_only_layers)
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # HF keys: rope_type, factor, original_max_position_embeddings, beta_fast, ...
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # bias on q/k/v (Qwen2 always; Qwen3 also on o_proj when set)
    qk_norm: bool = False  # per-head RMSNorm of q and k before RoPE (Qwen3)
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = False
    decoder_sparse_step: int = 1
    mlp_only_layers: list[int] = field(default_factory=list)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise QcoderError(
                f"unsupported architecture {self.architecture!r} (qcoder runs {', '.join(ARCHITECTURES)})"
            )

    def is_moe_layer(self, layer_idx: int) -> bool:
        """Same rule as transformers' Qwen3MoeDecoderLayer."""
        return (
            self.num_experts > 0
            and layer_idx not in self.mlp_only_layers
            and (layer_idx + 1) % self.decoder_sparse_step == 0
        )

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> ModelConfig:
        arch = _architecture(d, source)

        def need(key: str):
            if d.get(key) is None:
                raise QcoderError(f"{source}: missing required field {key!r}")
            return d[key]

        hidden, heads = int(need("hidden_size")), int(need("num_attention_heads"))
        # transformers' own defaults: Qwen2 derives head_dim, Qwen3 configs default it to 128.
        head_dim = d.get("head_dim") or (hidden // heads if arch == "qwen2" else 128)
        if d.get("use_sliding_window"):
            raise QcoderError(f"{source}: use_sliding_window is not supported")
        rope_theta, rope_scaling = _rope(d, source)
        moe = {}
        if arch == "qwen3_moe":
            # transformers 5 writes num_local_experts; published checkpoints say num_experts.
            num_experts = d.get("num_experts", d.get("num_local_experts"))
            if num_experts is None:
                raise QcoderError(f"{source}: missing required field 'num_experts'")
            moe = dict(
                num_experts=int(num_experts),
                num_experts_per_tok=int(need("num_experts_per_tok")),
                moe_intermediate_size=int(need("moe_intermediate_size")),
                norm_topk_prob=bool(d.get("norm_topk_prob", False)),
                decoder_sparse_step=int(d.get("decoder_sparse_step") or 1),
                mlp_only_layers=[int(i) for i in d.get("mlp_only_layers") or []],
            )
        return cls(
            architecture=arch,
            vocab_size=int(need("vocab_size")),
            hidden_size=hidden,
            intermediate_size=int(need("intermediate_size")),
            num_hidden_layers=int(need("num_hidden_layers")),
            num_attention_heads=heads,
            num_key_value_heads=int(d.get("num_key_value_heads") or heads),
            head_dim=int(head_dim),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            max_position_embeddings=int(d.get("max_position_embeddings") or 32768),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            attention_bias=True if arch == "qwen2" else bool(d.get("attention_bias", False)),
            qk_norm=arch != "qwen2",
            **moe,
        )


def _architecture(d: dict, source: str) -> str:
    names, model_type = d.get("architectures") or [], d.get("model_type")
    if not names and model_type is None:
        raise QcoderError(f"{source}: missing required field 'architectures' (or 'model_type')")
    for name in names:  # the class list is authoritative when present
        if name in _HF_CLASS_TO_ARCH:
            return _HF_CLASS_TO_ARCH[name]
    if not names and model_type in ARCHITECTURES:
        return model_type
    found = ", ".join(names) or model_type
    raise QcoderError(f"{source}: unsupported architecture {found!r} (qcoder runs Qwen2, Qwen3 and Qwen3-MoE)")


def _rope(d: dict, source: str) -> tuple[float, dict | None]:
    """rope_theta and the scaling dict, from `rope_scaling` (published configs) or `rope_parameters` (transformers 5)."""
    key = "rope_scaling" if d.get("rope_scaling") else "rope_parameters"
    params = dict(d.get(key) or {})
    rope_theta = float(d.get("rope_theta") or params.pop("rope_theta", None) or 10000.0)
    params.pop("rope_theta", None)
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    if rope_type not in ROPE_TYPES:
        raise QcoderError(f"{source}: unsupported {key}.rope_type {rope_type!r} (supported: {', '.join(ROPE_TYPES)})")
    if rope_type == "default":
        return rope_theta, None
    # As transformers: the pre-training length defaults to max_position_embeddings.
    params.setdefault(
        "original_max_position_embeddings",
        d.get("original_max_position_embeddings") or d.get("max_position_embeddings"),
    )
    if params["original_max_position_embeddings"] is None:
        raise QcoderError(f"{source}: missing required field '{key}.original_max_position_embeddings'")
    return rope_theta, {"rope_type": rope_type, **params}
