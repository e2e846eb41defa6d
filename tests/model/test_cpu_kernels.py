"""cpu_kernels.attention_decode against PyTorch's SDPA, and the build's fallback switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qcoder.model import cpu_kernels

pytestmark = pytest.mark.skipif(cpu_kernels.unavailable() is not None, reason=str(cpu_kernels.unavailable()))


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(14, 2, 64), (4, 4, 128), (16, 8, 8)])
def test_attention_decode_matches_sdpa(heads, kv_heads, head_dim, cache_dtype):
    torch.manual_seed(heads)
    lens = [1, 37, 9, 64]
    num_slots = 200
    cache = (torch.randn(2, num_slots, kv_heads, head_dim) * 3).to(cache_dtype)  # large scores: peaked softmax
    slots = torch.zeros(len(lens), max(lens), dtype=torch.int64)
    for b, n in enumerate(lens):
        slots[b, :n] = torch.randperm(num_slots)[:n]  # scattered, as paged blocks are
    q = torch.randn(len(lens), heads, head_dim)
    out = cpu_kernels.attention_decode(q, cache, slots, torch.tensor(lens))
    for b, n in enumerate(lens):
        k = cache[0, slots[b, :n]].transpose(0, 1)[None].float()  # [1, kv_heads, n, head_dim]
        v = cache[1, slots[b, :n]].transpose(0, 1)[None].float()
        ref = F.scaled_dot_product_attention(q[b, :, None][None], k, v, enable_gqa=True)[0, :, 0]
        assert torch.allclose(out[b], ref, atol=2e-5, rtol=1e-4), (out[b] - ref).abs().max()


def test_disabled_makes_the_kernels_unavailable_for_the_block():
    assert cpu_kernels.unavailable() is None
    assert cpu_kernels.describe_kernels().startswith("C kernels (AVX2")
    with cpu_kernels.disabled():
        assert cpu_kernels.unavailable() == "disabled by QCODER_NATIVE_KERNELS=0"
        assert cpu_kernels.describe_kernels() == "PyTorch kernels (disabled by QCODER_NATIVE_KERNELS=0)"
        assert "prefill: " in cpu_kernels.describe()  # PyTorch's layers choose their GEMM's dtype too
    assert cpu_kernels.unavailable() is None


def test_describe_says_where_and_what_runs():
    text = cpu_kernels.describe()
    isa = cpu_kernels.cpu_isa()
    assert set(isa) == {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"}
    listed = text[text.index("[") + 1 : text.index("]")].split()
    assert listed == [flag if present else f"-{flag}" for flag, present in isa.items()]  # missing ones marked
    assert f"torch {torch.backends.cpu.get_cpu_capability()}" in text
    assert cpu_kernels.describe_kernels() in text and "prefill: " in text
    assert text.endswith(f"long-context attention: {'bf16' if cpu_kernels.has_bf16() else 'fp32'}")


def test_an_explicit_march_builds_and_says_so(monkeypatch):
    """QCODER_KERNEL_ARCH (what CI uses to run the AVX2 code on an AVX-512 machine) is part of the cache key."""
    current = cpu_kernels.kernels().path
    other = "skylake" if cpu_kernels.arch() == "haswell" else "haswell"  # neither has AVX-512
    monkeypatch.setenv("QCODER_KERNEL_ARCH", other)
    cpu_kernels.kernels.cache_clear()
    try:
        assert cpu_kernels.unavailable() is None
        assert cpu_kernels.kernels().path != current
        assert cpu_kernels.describe_kernels() == f"C kernels (AVX2, -march={other})"
    finally:
        monkeypatch.undo()
        cpu_kernels.kernels.cache_clear()


def test_rmsnorm_rope_and_silu_mul_match_the_pytorch_code():
    from qcoder.model.qwen import RMSNorm
    from qcoder.model.rope import apply_rope

    torch.manual_seed(0)
    norm = RMSNorm(896, 1e-6)
    norm.weight.data = torch.randn(896)
    x = torch.randn(5, 896) * 4
    with cpu_kernels.disabled():
        ref = norm(x)
    assert torch.allclose(norm(x), ref, rtol=1e-5, atol=1e-5)

    heads, kv_heads, head_dim = 4, 2, 64
    qkv = torch.randn(3, (heads + 2 * kv_heads) * head_dim)
    angles = torch.rand(3, head_dim // 2) * 6
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    rows = qkv.view(3, -1, head_dim)
    want = torch.cat([apply_rope(rows[:, : heads + kv_heads], cos, sin), rows[:, heads + kv_heads :]], 1)
    cpu_kernels.rope_(qkv, heads + kv_heads, head_dim, cos, sin)
    assert torch.equal(qkv.view(3, -1, head_dim), want)  # same formula and rounding order

    gate_up = torch.randn(4, 2 * 100) * 5  # 100: a tail after the 8-wide vectors
    expected = torch.nn.functional.silu(gate_up[:, :100]) * gate_up[:, 100:]
    assert torch.allclose(cpu_kernels.silu_mul(gate_up), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 2, 5, 8])
def test_decode_rows_match_the_dequantized_weights(rows):
    """Up to eight activation rows take their own kernels (four weight rows at a time, scales gathered eight blocks
    at a time): every type, block counts that are not a multiple of eight, and part boundaries inside a tile."""
    import numpy as np

    from qcoder.model.gguf_linear import NATIVE_TYPES, GGUFLinear

    from .test_gguf_linear import assert_matches, dequantized, int8_blocks, raw_tensor

    rng = np.random.default_rng(rows)
    for kind in NATIVE_TYPES:
        cols = 1280 if kind.endswith("_K") else 896  # 40 and 28 blocks of 32
        raw = raw_tensor(kind, 13, cols, rng)
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        assert_matches(GGUFLinear([raw])(torch.from_numpy(x)), int8_blocks(x) @ dequantized(raw).T)
    parts = [raw_tensor("Q5_0", 6, 768, rng), raw_tensor("Q8_0", 5, 768, rng), raw_tensor("Q6_K", 9, 768, rng)]
    x = rng.standard_normal((rows, 768)).astype(np.float32)
    weight = np.concatenate([dequantized(p) for p in parts])
    assert_matches(GGUFLinear(parts)(torch.from_numpy(x)), int8_blocks(x) @ weight.T)
