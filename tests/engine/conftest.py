"""Tiny random Qwen checkpoints with the real Qwen tokenizers, for engine tests.

The vocabulary is the real one (151,936 rows) so that real token ids fit; everything else is tiny.
Built once per test session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import QWEN3_CODER, QWEN25_TOKENIZER

QWEN3_TOKENIZER = QWEN3_CODER
QWEN3_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")

TINY = dict(
    vocab_size=151936,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    initializer_range=0.2,  # peaked logits: greedy decoding has clear winners, so fp32 rounding cannot flip them
)


def build_tiny_model(directory: Path, arch: str = "qwen2") -> Path:
    import transformers

    torch.manual_seed(0)
    if arch == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**TINY))
        tokenizer_files = [QWEN25_TOKENIZER / f.name for f in QWEN25_TOKENIZER.iterdir()]
    else:
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(head_dim=8, **TINY))
        tokenizer_files = [QWEN3_TOKENIZER / name for name in QWEN3_TOKENIZER_FILES]
    model.eval().save_pretrained(directory)
    for file in tokenizer_files:
        shutil.copy(file, directory / file.name)
    return directory


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"), "qwen3")


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
