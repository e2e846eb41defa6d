"""Tiny random Qwen checkpoints with the real Qwen tokenizers, for engine tests.

The vocabulary is the real one (151,936 rows) so that real token ids fit; everything else is tiny.
Built once per test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import QWEN3_TOKENIZER_FILES, QWEN25_TOKENIZER_FILES, REAL_VOCAB, tiny_checkpoint

# The vocabulary is the real one so that real token ids fit; everything else is tiny.
ENGINE_TINY = dict(
    vocab_size=REAL_VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    initializer_range=0.2,  # peaked logits: greedy decoding has clear winners, so fp32 rounding cannot flip them
)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return tiny_checkpoint(
        "qwen2", tmp_path_factory.mktemp("tiny-qwen2"), tokenizer_files=QWEN25_TOKENIZER_FILES, **ENGINE_TINY
    )


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory) -> Path:
    return tiny_checkpoint(
        "qwen3", tmp_path_factory.mktemp("tiny-qwen3"), tokenizer_files=QWEN3_TOKENIZER_FILES, head_dim=8, **ENGINE_TINY
    )


@pytest.fixture(scope="session")
def hf_qwen2(tiny_qwen2):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32).eval()


class ScriptedModel(torch.nn.Module):
    """A stand-in model for one request: its k-th sampled row has script[k] as the clear greedy choice."""

    def __init__(self, vocab_size: int, script: list[int]):
        super().__init__()
        self.vocab_size = vocab_size
        self.script = script
        self.sampled = 0

    def forward(self, batch, kv_caches):
        logits = torch.zeros(len(batch.logits_indices), self.vocab_size)
        for row in range(len(batch.logits_indices)):
            logits[row, self.script[min(self.sampled, len(self.script) - 1)]] = 1.0
            self.sampled += 1
        return logits


def scripted_llm(model_dir: Path, text: str):
    """An LLM over the tokenizer in model_dir whose model always answers `text` (greedy)."""
    from qcoder.engine.llm import LLM, LLMEngine
    from qcoder.engine.tokenizer import Tokenizer
    from qcoder.model.config import ModelConfig

    tokenizer = Tokenizer.from_path(model_dir)
    config = ModelConfig("qwen2", 151936, 8, 8, 1, 1, 1, 8, max_position_embeddings=512)
    model = ScriptedModel(config.vocab_size, tokenizer.encode(text))
    return LLM.from_engine(LLMEngine.from_parts(model, config, tokenizer, kv_cache_tokens=1024))
