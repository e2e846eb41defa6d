"""Qwen2 / Qwen3 / Qwen3-MoE in plain PyTorch (one model file).

CONTRACT with the engine (kept stable; the engine builds a ForwardBatch every step):
- All new tokens of all sequences in a step are flattened into one 1-D batch, sequence after sequence.
- The KV cache is owned by the engine: one tensor per layer of shape
  [2, num_slots, num_kv_heads, head_dim] (num_slots = num_blocks * block_size), K at [0], V at [1].
- Token i's K/V is written at slot `slot_mapping[i]`; sequence b's cached context (including the new
  tokens) is the slots `block_tables[b, j] * block_size + offset` for its first `context_lens[b]` tokens.
- `forward(batch, kv_caches)` returns fp32 logits for the rows `batch.logits_indices` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ForwardBatch:
    input_ids: torch.Tensor  # [T] int64: new tokens of every sequence, concatenated in order
    positions: torch.Tensor  # [T] int64: absolute position of each new token in its sequence
    query_lens: list[int]  # new tokens per sequence this step; sum == T
    context_lens: list[int]  # tokens in cache per sequence after this step (cached + new)
    slot_mapping: torch.Tensor  # [T] int64: flat cache slot each new token's K/V is written to
    block_tables: torch.Tensor  # [B, max_blocks] int64 block ids (padding entries are never read)
    block_size: int
    logits_indices: torch.Tensor  # [N] int64: rows of the flattened batch whose logits are returned
