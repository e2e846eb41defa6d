"""Tiny random Qwen2 / Qwen3 / Qwen3-MoE checkpoints built with transformers and saved with save_pretrained.

The builder is tests/conftest.py's `tiny_checkpoint(arch, directory, **config_overrides)`; the fixture below caches
one model per variant for the whole test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import QWEN3_CODER, tiny_checkpoint, tiny_hf_model  # noqa: F401 (re-exported)

REAL_QWEN3_CODER = QWEN3_CODER

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
            cache[variant] = tiny_checkpoint(arch, tmp_path_factory.mktemp(variant), **overrides)
        return cache[variant]

    return get
