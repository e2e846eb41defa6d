"""Prefill attention for new tokens that follow a cached context, in tiles: memory linear in the context length.

When a prompt's first tokens are already in the KV cache (the prefix cache: an agent's second turn re-sends the
first turn's 17K tokens), or a long prompt is computed in chunks, the new queries see every cached key and,
causally, each other. PyTorch's SDPA has no causal mode for that alignment, and an explicit mask is
[new tokens x context] (a 16K-token turn: 256M entries) on top of SDPA's own quadratic fallback.

So the scores are computed a tile of queries x a tile of keys at a time with a running softmax (FlashAttention's
recurrence): per query, the running maximum m, the sum of e^(s - m) and the e^(s - m)-weighted sum of values are
rescaled whenever m grows. Each tile is two batched GEMMs, and a key tile past a query tile's last position is never
computed. Query heads sharing a KV head are stacked into one GEMM (GQA without copying K and V).
"""

from __future__ import annotations

import torch

QUERY_TILE = 256  # queries per tile
KEY_TILE = 1024  # keys per tile: a tile's scores are heads x 256 x 1024 fp32 (14 MiB for 14 heads)


def attention_after_prefix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q K^T / sqrt(d)) V where new token i (of q_len) sits at position ctx - q_len + i and sees keys
    0 .. that position. q: [q_len, heads, head_dim]; k, v: [ctx, kv_heads, head_dim]. Returns [q_len, heads, head_dim]
    in q's dtype (computed in fp32)."""
    q_len, heads, head_dim = q.shape
    ctx, kv_heads, _ = k.shape
    groups, first = heads // kv_heads, ctx - q_len
    # [kv_heads, groups, q_len, head_dim]: the query heads of one KV head side by side
    qh = (q.float() * head_dim**-0.5).view(q_len, kv_heads, groups, head_dim).permute(1, 2, 0, 3)
    kh, vh = k.float().transpose(0, 1), v.float().transpose(0, 1)  # [kv_heads, ctx, head_dim]
    out = torch.empty(kv_heads, groups, q_len, head_dim, device=q.device)
    for i0 in range(0, q_len, QUERY_TILE):
        i1 = min(q_len, i0 + QUERY_TILE)
        rows = groups * (i1 - i0)
        qt = qh[:, :, i0:i1].reshape(kv_heads, rows, head_dim)
        position = (first + torch.arange(i0, i1, device=q.device)).repeat(groups)[:, None]  # of each row
        top = torch.full((kv_heads, rows, 1), float("-inf"), device=q.device)
        total = torch.zeros(kv_heads, rows, 1, device=q.device)
        acc = torch.zeros(kv_heads, rows, head_dim, device=q.device)
        for j0 in range(0, first + i1, KEY_TILE):  # keys up to the tile's last query
            j1 = min(first + i1, j0 + KEY_TILE)
            s = torch.bmm(qt, kh[:, j0:j1].transpose(1, 2))  # [kv_heads, rows, keys]
            if j1 - 1 > first + i0:  # the tile reaches past the first query: hide each query's future keys
                s.masked_fill_(torch.arange(j0, j1, device=q.device)[None, :] > position, float("-inf"))
            new_top = torch.maximum(top, s.amax(-1, keepdim=True))  # finite: key 0 is in the first tile
            p = torch.exp(s - new_top)
            rescale = torch.exp(top - new_top)
            total = total * rescale + p.sum(-1, keepdim=True)
            acc = torch.baddbmm(acc * rescale, p, vh[:, j0:j1])
            top = new_top
        out[:, :, i0:i1] = (acc / total).view(kv_heads, groups, i1 - i0, head_dim)
    return out.permute(2, 0, 1, 3).reshape(q_len, heads, head_dim).to(q.dtype)
