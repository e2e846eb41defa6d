"""Prefill attention for new tokens that follow a cached context, a tile of queries at a time: memory linear in the
context length.

When a prompt's first tokens are already in the KV cache (the prefix cache: an agent's second turn re-sends the
first turn's 17K tokens), or a long prompt is computed in chunks, the new queries see every cached key and,
causally, each other. PyTorch's SDPA has no causal mode for that alignment, so it needs a mask, and one mask for all
new tokens is [new tokens x context] (a 16K-token turn: 256M entries, 1.3 GB with SDPA's float copy of it).

So each tile of QUERY_TILE queries gets its own SDPA call over the keys it can see (the cached ones and the new ones
up to its last query), with a mask of [tile x those keys]: memory is linear in the context. The query heads that
share a KV head go in as GQA, so K and V are not copied per head. On a 2-core CPU this took 0.55-0.8x the time of
the single masked call with heads expanded (512 or 2048 new tokens after 4096), and its result is the same.

Long contexts are attended in bf16 where the CPU multiplies bf16 in hardware (`prefill_dtype`): SDPA's CPU kernel
accumulates in fp32, and at 16K keys it took 0.36x the fp32 time (2 cores, AMX) for a max error of about 1e-3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qcoder.model import cpu_kernels

QUERY_TILE = 512  # queries per SDPA call: a 16K context's mask is then 8M entries
BF16_CONTEXT = 1024  # keys from which prefill attention runs in bf16 (where that is native): shorter ones gain little


def prefill_dtype(q: torch.Tensor, context: int) -> torch.dtype:
    """The dtype to attend `context` keys in: bf16 for an fp32 CPU prefill over a long context where the CPU has
    native bf16, else q's own."""
    long_fp32 = q.dtype == torch.float32 and q.device.type == "cpu" and context >= BF16_CONTEXT
    return torch.bfloat16 if long_fp32 and cpu_kernels.has_bf16() else q.dtype


def attention_after_prefix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q K^T / sqrt(d)) V where new token i (of q_len) sits at position ctx - q_len + i and sees keys
    0 .. that position. q: [q_len, heads, head_dim]; k, v: [ctx, kv_heads, head_dim], any float dtype.
    Returns [q_len, heads, head_dim] in q's dtype."""
    q_len, ctx = q.shape[0], k.shape[0]
    first = ctx - q_len
    qh = q.transpose(0, 1)[None]  # [1, heads, q_len, head_dim]
    kh, vh = (t.to(q.dtype).transpose(0, 1)[None] for t in (k, v))  # [1, kv_heads, ctx, head_dim]
    keys = torch.arange(ctx, device=q.device)
    outs = []
    for i0 in range(0, q_len, QUERY_TILE):
        i1 = min(q_len, i0 + QUERY_TILE)
        end = first + i1  # the tile's last query sees keys up to here
        mask = keys[None, :end] <= first + torch.arange(i0, i1, device=q.device)[:, None]
        outs.append(
            F.scaled_dot_product_attention(
                qh[:, :, i0:i1], kh[:, :, :end], vh[:, :, :end], attn_mask=mask, enable_gqa=True
            )
        )
    return torch.cat(outs, 2)[0].transpose(0, 1)
