"""Tiny random Qwen2 / Qwen3 / Qwen3-MoE checkpoints built with transformers and saved with save_pretrained.

`save_tiny_model(arch, directory, **config_overrides)` is the reusable builder; the fixtures below cache one
model per variant for the whole test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import QWEN3_CODER

REAL_QWEN3_CODER = QWEN3_CODER

_COMMON = dict(
    vocab_size=320,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    # Larger than the default 0.02 so that random logits are peaked and greedy decoding has clear winners.
    initializer_range=0.15,
)


def tiny_hf_model(arch: str, **config_overrides):
    """A randomly initialised transformers model (eval mode, fp32) of the given architecture."""
    import transformers

    kwargs = dict(_COMMON, **config_overrides)
    if arch == "qwen2":
        config = transformers.Qwen2Config(**kwargs)
        model_cls = transformers.Qwen2ForCausalLM
    elif arch == "qwen3":
        config = transformers.Qwen3Config(head_dim=16, **kwargs)
        model_cls = transformers.Qwen3ForCausalLM
    elif arch == "qwen3_moe":
        moe = dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True)
        config = transformers.Qwen3MoeConfig(head_dim=16, **dict(moe, **kwargs))
        model_cls = transformers.Qwen3MoeForCausalLM
    else:
        raise ValueError(arch)
    torch.manual_seed(0)
    return model_cls(config).to(torch.float32).eval()


def save_tiny_model(arch: str, directory: Path, max_shard_size: str | None = None, **config_overrides) -> Path:
    """Build a tiny random model and save_pretrained it (config.json + safetensors) into `directory`."""
    model = tiny_hf_model(arch, **config_overrides)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    return Path(directory)


VARIANTS = {
    "qwen2": ("qwen2", {}),
    "qwen2-tied": ("qwen2", {"tie_word_embeddings": True}),
    "qwen3": ("qwen3", {}),
    "qwen3-tied": ("qwen3", {"tie_word_embeddings": True}),
    # layer 1 is a dense MLP, layers 0 and 2 are sparse
    "qwen3_moe": ("qwen3_moe", {"mlp_only_layers": [1]}),
    "qwen3_moe-sparse-step": ("qwen3_moe", {"decoder_sparse_step": 2, "norm_topk_prob": False}),
    "qwen3-yarn": (
        "qwen3",
        {
            "max_position_embeddings": 64,
            "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
        },
    ),
    "qwen2-yarn": (
        "qwen2",
        {
            "max_position_embeddings": 64,
            "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
        },
    ),
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir(variant) -> a saved checkpoint directory for a key of VARIANTS, built once per session."""
    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            arch, overrides = VARIANTS[variant]
            cache[variant] = save_tiny_model(arch, tmp_path_factory.mktemp(variant), **overrides)
        return cache[variant]

    return get
