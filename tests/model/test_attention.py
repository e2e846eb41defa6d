"""Tiled prefill attention after a cached prefix against SDPA with the explicit mask it replaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qcoder.model import attention


def reference(q, k, v):
    """The explicit-mask SDPA: quadratic in memory, but plainly right."""
    q_len, heads, _ = q.shape
    ctx, kv_heads, _ = k.shape
    i = torch.arange(q_len)[:, None]
    mask = torch.arange(ctx)[None, :] <= ctx - q_len + i
    groups = heads // kv_heads
    kk, vv = (t.float().transpose(0, 1).repeat_interleave(groups, 0)[None] for t in (k, v))
    return F.scaled_dot_product_attention(q.float().transpose(0, 1)[None], kk, vv, attn_mask=mask)[0].transpose(0, 1)


@pytest.mark.parametrize("q_len,ctx", [(1, 1), (1, 75), (37, 37), (40, 150), (33, 64), (100, 101)])
@pytest.mark.parametrize("heads,kv_heads", [(14, 2), (4, 4)])
@pytest.mark.parametrize("kv_dtype", [torch.float32, torch.float16])
def test_tiles_match_the_masked_reference(monkeypatch, q_len, ctx, heads, kv_heads, kv_dtype):
    monkeypatch.setattr(attention, "QUERY_TILE", 16)  # many tiles, and a short last one
    torch.manual_seed(q_len * ctx + heads)
    q = torch.randn(q_len, heads, 64) * 2  # large scores: a peaked softmax
    k, v = (torch.randn(ctx, kv_heads, 64) * 2).to(kv_dtype), torch.randn(ctx, kv_heads, 64).to(kv_dtype)
    out = attention.attention_after_prefix(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert torch.allclose(out, reference(q, k, v), atol=2e-5, rtol=1e-4)


def test_default_tiles_on_a_long_context():
    torch.manual_seed(0)
    q, k, v = torch.randn(1100, 14, 64), torch.randn(2500, 2, 64), torch.randn(2500, 2, 64)  # 3 query tiles
    assert torch.allclose(attention.attention_after_prefix(q, k, v), reference(q, k, v), atol=2e-5, rtol=1e-4)
