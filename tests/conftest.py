"""What every test area shares: where the shared data lives (tokenizers, chat templates, datasets).

The data sits in `shared/data` beside the checkout (or beside a folder of worktrees); it is read in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _shared_data() -> Path:
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return here.parents[2] / "shared" / "data"


SHARED_DATA = _shared_data()
QWEN25_TOKENIZER = SHARED_DATA / "qwen2.5-coder-tokenizer"  # Qwen2.5-Coder: Hermes JSON tool calls
QWEN3_CODER = SHARED_DATA / "qwen3-coder-30b-a3b-instruct"  # Qwen3-Coder: XML tool calls, <think> tokens
# What a tiny checkpoint copies to get a real tokenizer (the Qwen3-Coder folder also holds the real model's config).
QWEN25_TOKENIZER_FILES = [
    QWEN25_TOKENIZER / name for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
]
QWEN3_TOKENIZER_FILES = [QWEN3_CODER / name for name in ("vocab.json", "merges.txt", "tokenizer_config.json")]

# Without the shared data (a clone with no shared/data in any parent folder) the tests that read it skip, all with
# this one reason, instead of failing far from the cause.
NO_SHARED_DATA = (
    f"shared data not found: {SHARED_DATA} (tokenizers and datasets are read from shared/data beside the checkout)"
)
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NO_SHARED_DATA)


def require_files(files) -> None:
    """Skip the calling test (or fixture) unless every one of `files` exists."""
    if any(not Path(file).exists() for file in files):
        pytest.skip(NO_SHARED_DATA)


# ----- tiny random checkpoints -----

# Small everywhere; initializer_range above the default 0.02 makes random logits peaked, so greedy decoding has
# clear winners that fp32 rounding and batching cannot flip.
TINY_CONFIG = dict(
    vocab_size=320,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    initializer_range=0.15,
)
ARCH_CONFIG = {
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "qwen3_moe": {
        "head_dim": 16,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "norm_topk_prob": True,
    },
}
REAL_VOCAB = 151936  # with a real Qwen tokenizer, the real vocabulary, so that its token ids fit


def tiny_hf_model(arch: str, **overrides):
    """A randomly initialised transformers model (seed 0, eval mode, fp32): "qwen2", "qwen3" or "qwen3_moe"."""
    import torch
    import transformers

    classes = {
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
        "qwen3_moe": (transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM),
    }
    if arch not in classes:
        raise ValueError(arch)
    config_cls, model_cls = classes[arch]
    torch.manual_seed(0)
    return model_cls(config_cls(**{**TINY_CONFIG, **ARCH_CONFIG[arch], **overrides})).to(torch.float32).eval()


def tiny_checkpoint(
    arch: str, directory: Path, *, tokenizer_files=(), max_shard_size: str | None = None, **overrides
) -> Path:
    """tiny_hf_model saved with save_pretrained (config.json + safetensors) into `directory`, with copies of
    `tokenizer_files` beside it (pass vocab_size=REAL_VOCAB with a real tokenizer)."""
    import shutil

    require_files(tokenizer_files)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    tiny_hf_model(arch, **overrides).save_pretrained(directory, **kwargs)
    for file in tokenizer_files:
        shutil.copy(file, Path(directory) / Path(file).name)
    return Path(directory)
