"""The real default model as `qcoder pull` leaves it in the cache (skipped only when it has not been pulled)."""

from __future__ import annotations

import pytest

from qcoder.model.registry import DEFAULT_MODEL, REGISTRY, is_present, model_path, resolve_model

pytestmark = [
    pytest.mark.realmodel,
    pytest.mark.skipif(
        not is_present(REGISTRY[DEFAULT_MODEL]),
        reason=f"{DEFAULT_MODEL} is not in the cache (run `qcoder pull`)",
    ),
]


def test_resolve_model_finds_the_cached_default_without_pulling():
    assert resolve_model(DEFAULT_MODEL, pull=False) == model_path(REGISTRY[DEFAULT_MODEL])


def test_real_default_model_metadata():
    from qcoder.model.gguf import GGUFCheckpoint

    checkpoint = GGUFCheckpoint(resolve_model(DEFAULT_MODEL, pull=False))
    assert checkpoint.metadata["general.architecture"] == "qwen2"
    assert checkpoint.config.architecture == "qwen2"
    assert checkpoint.config.num_hidden_layers == 24
    assert checkpoint.config.vocab_size == 151_936
