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

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from qcoder.model import cpu_kernels
from qcoder.model.attention import attention_after_prefix, prefill_dtype
from qcoder.model.config import ModelConfig
from qcoder.model.rope import RotaryEmbedding, apply_rope


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

    @classmethod
    def from_sequences(
        cls,
        new_tokens: list[list[int]],
        cached_lens: list[int],
        block_tables: torch.Tensor,
        block_size: int,
        all_logits: bool = False,
    ) -> ForwardBatch:
        """One step in which sequence b, with cached_lens[b] tokens already in its blocks, feeds new_tokens[b].

        Returns logits for the last new token of each sequence, or for every new token when all_logits is set.
        """
        query_lens = [len(t) for t in new_tokens]
        context_lens = [c + q for c, q in zip(cached_lens, query_lens, strict=True)]
        capacity = block_tables.shape[1] * block_size
        if max(context_lens) > capacity:
            raise ValueError(f"a sequence of {max(context_lens)} tokens does not fit {capacity} slots of its blocks")
        seq = torch.repeat_interleave(torch.arange(len(new_tokens)), torch.tensor(query_lens))
        positions = torch.cat([torch.arange(c, n) for c, n in zip(cached_lens, context_lens, strict=True)])
        slot_mapping = block_tables[seq, positions // block_size] * block_size + positions % block_size
        ends = torch.tensor(query_lens).cumsum(0)
        return cls(
            input_ids=torch.tensor([t for tokens in new_tokens for t in tokens], dtype=torch.int64),
            positions=positions,
            query_lens=query_lens,
            context_lens=context_lens,
            slot_mapping=slot_mapping,
            block_tables=block_tables,
            block_size=block_size,
            logits_indices=torch.arange(int(ends[-1])) if all_logits else ends - 1,
        )

    @classmethod
    def for_new_prompts(
        cls, prompts: list[list[int]], block_size: int = 16, reserve: int = 0, all_logits: bool = False
    ) -> ForwardBatch:
        """A fresh prefill. Sequence b owns the contiguous blocks [b*n, (b+1)*n), where n blocks hold the longest
        prompt plus `reserve` more tokens (room for decode steps). Needs len(prompts) * n * block_size cache slots."""
        blocks_per_seq = -(-(max(len(p) for p in prompts) + reserve) // block_size)
        block_tables = torch.arange(len(prompts) * blocks_per_seq).view(len(prompts), blocks_per_seq)
        return cls.from_sequences(prompts, [0] * len(prompts), block_tables, block_size, all_logits)

    def decode_step(self, next_tokens: list[int]) -> ForwardBatch:
        """The step after this one: each sequence feeds one token into the same blocks."""
        return ForwardBatch.from_sequences(
            [[t] for t in next_tokens], self.context_lens, self.block_tables, self.block_size
        )

    def to(self, device) -> ForwardBatch:
        """The same batch with its tensors on `device`."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return ForwardBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})

    @property
    def num_slots(self) -> int:
        """Cache slots this batch's block tables can address."""
        return (int(self.block_tables.max()) + 1) * self.block_size


def allocate_kv_cache(config: ModelConfig, num_slots: int, dtype: torch.dtype, device="cpu") -> list[torch.Tensor]:
    """One [2, num_slots, num_kv_heads, head_dim] tensor per layer (K at [0], V at [1])."""
    shape = (2, num_slots, config.num_key_value_heads, config.head_dim)
    return [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]


@dataclass
class AttentionPlan:
    """What every layer's attention needs from a ForwardBatch, computed once per step."""

    cos: torch.Tensor  # [T, head_dim] fp32
    sin: torch.Tensor
    context_slots: torch.Tensor  # [B, max_context] cache slots of each sequence's context (0 past its end)
    context_lens: torch.Tensor  # [B] int64
    decode_mask: torch.Tensor | None  # [B, 1, 1, max_context] True where a slot is context; None unless all q_len == 1

    @classmethod
    def build(cls, batch: ForwardBatch, rope: RotaryEmbedding) -> AttentionPlan:
        device = batch.input_ids.device
        cos, sin = rope.cos_sin(batch.positions, max(batch.context_lens))
        j = torch.arange(max(batch.context_lens), device=device)
        context_lens = torch.tensor(batch.context_lens, device=device)
        valid = j[None, :] < context_lens[:, None]
        slots = batch.block_tables[:, j // batch.block_size] * batch.block_size + j % batch.block_size
        slots = torch.where(valid, slots, 0)  # padding block ids may be anything: never index with them
        decode = all(q == 1 for q in batch.query_lens)
        return cls(cos, sin, slots, context_lens, valid[:, None, None, :] if decode else None)


def _c_kernels(x: torch.Tensor) -> bool:
    """Whether the C kernels (qcoder.model.cpu_kernels) take this tensor: fp32 on the CPU, and built. At decode
    sizes they replace runs of small PyTorch ops whose dispatch costs more than their arithmetic."""
    return x.dtype == torch.float32 and x.device.type == "cpu" and cpu_kernels.unavailable() is None


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _c_kernels(x) and x.is_contiguous():
            return cpu_kernels.rmsnorm(x, self.weight, self.eps)
        xf = x.float()  # normalise in fp32, then scale in the model dtype (as transformers does)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_size, self.kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        # q, k and v fused into one matmul; Qwen2 biases q/k/v only, Qwen3's attention_bias also covers o_proj.
        self.qkv_proj = nn.Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=config.attention_bias)
        o_bias = config.attention_bias and config.architecture != "qwen2"
        self.o_proj = nn.Linear(self.q_size, config.hidden_size, bias=o_bias)
        if config.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.qk_norm = config.qk_norm

    def forward(self, x: torch.Tensor, batch: ForwardBatch, plan: AttentionPlan, cache: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv_proj(x)
        rotated = not self.qk_norm and _c_kernels(qkv)
        if rotated:  # q and k heads sit side by side in each row: one in-place call rotates both
            cpu_kernels.rope_(qkv, self.num_heads + self.num_kv_heads, self.head_dim, plan.cos, plan.sin)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if not rotated:
            q, k = apply_rope(q, plan.cos, plan.sin), apply_rope(k, plan.cos, plan.sin)
        cache[0].index_copy_(0, batch.slot_mapping, k.to(cache.dtype))
        cache[1].index_copy_(0, batch.slot_mapping, v.to(cache.dtype))
        if plan.decode_mask is not None:
            out = self._decode(q, plan, cache)
        else:
            out = self._prefill(q, batch, plan, cache)
        return self.o_proj(out.reshape(-1, self.q_size))

    def _decode(self, q: torch.Tensor, plan: AttentionPlan, cache: torch.Tensor) -> torch.Tensor:
        """One query per sequence: the C kernel on the CPU in fp32 (SDPA's dispatch costs more than the arithmetic
        at decode sizes), else a single padded SDPA call over all sequences."""
        if _c_kernels(q) and cache.dtype in (torch.float32, torch.float16) and self.head_dim % 8 == 0:
            return cpu_kernels.attention_decode(q.contiguous(), cache, plan.context_slots, plan.context_lens)
        shape = (*plan.context_slots.shape, self.num_kv_heads, self.head_dim)  # [B, max_context, kv_heads, head_dim]
        # index_select: far faster than advanced indexing for row gathers on CPU
        k = cache[0].index_select(0, plan.context_slots.flatten()).view(shape).transpose(1, 2).to(q.dtype)
        v = cache[1].index_select(0, plan.context_slots.flatten()).view(shape).transpose(1, 2).to(q.dtype)
        out = F.scaled_dot_product_attention(q[:, :, None, :], k, v, attn_mask=plan.decode_mask, enable_gqa=True)
        return out[:, :, 0, :]

    def _prefill(self, q: torch.Tensor, batch: ForwardBatch, plan: AttentionPlan, cache: torch.Tensor) -> torch.Tensor:
        """Any mix of prompts, chunks and decodes, one sequence at a time: a whole prompt by SDPA's causal mode
        (flash-style on the CPU, memory linear in its length); new tokens after cached ones (the prefix cache, a
        chunked prompt) by attention_after_prefix's tiles, also linear in the context length."""
        outs, start = [], 0
        for b, (q_len, ctx_len) in enumerate(zip(batch.query_lens, batch.context_lens, strict=True)):
            slots = plan.context_slots[b, :ctx_len]
            k, v = cache[0].index_select(0, slots), cache[1].index_select(0, slots)  # [ctx_len, kv_heads, head_dim]
            qb = q[start : start + q_len].to(prefill_dtype(q, ctx_len))
            if q_len == ctx_len:  # nothing cached before: plain causal attention
                kb, vb = k.transpose(0, 1)[None].to(qb.dtype), v.transpose(0, 1)[None].to(qb.dtype)
                o = F.scaled_dot_product_attention(qb.transpose(0, 1)[None], kb, vb, is_causal=True, enable_gqa=True)
                outs.append(o[0].transpose(0, 1).to(q.dtype))
            else:  # query i sits at position ctx_len - q_len + i and sees every key up to it
                outs.append(attention_after_prefix(qb, k, v).to(q.dtype))
            start += q_len
        return torch.cat(outs)


MLP_PART_BYTES = 24 << 20


class MLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_up_proj = nn.Linear(hidden_size, 2 * intermediate_size, bias=False)  # gate and up fused
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A long step's rows in parts: each part's gate|up product stays under glibc's mmap threshold and reuses
        # the heap (qcoder.threads.configure_malloc) instead of being zero-filled afresh; rows are independent.
        rows = max(64, MLP_PART_BYTES // (self.gate_up_proj.out_features * x.element_size()))
        if x.device.type == "cpu" and x.dim() == 2 and x.shape[0] > rows:
            return torch.cat([self._forward(part) for part in x.split(rows)])
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = self.gate_up_proj(x)
        if _c_kernels(gate_up):
            act = cpu_kernels.silu_mul(gate_up)
        else:
            gate, up = gate_up.chunk(2, dim=-1)
            act = F.silu(gate) * up
            del gate, up
        del gate_up  # freed before down_proj runs: at a 512-token prefill this is the step's largest tensor
        return self.down_proj(act)


class Experts(nn.Module):
    """All experts of one MoE layer as stacked weights; each expert runs once on the tokens routed to it."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))

    def forward(self, x: torch.Tensor, expert_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: [T, H]; expert_ids, weights: [T, top_k]."""
        return run_grouped_experts(x, expert_ids, weights, self.gate_up_proj.shape[0], self._expert)

    def _expert(self, expert: int, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, self.gate_up_proj[expert]).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj[expert])


def run_grouped_experts(x, expert_ids, weights, num_experts: int, expert_mlp) -> torch.Tensor:
    """Sort the (token, k) pairs by expert and run `expert_mlp(expert, rows)` once per expert that got tokens,
    never a loop over every expert for every token. Shared by the plain and the quantized experts."""
    top_k = expert_ids.shape[1]
    order = expert_ids.flatten().argsort(stable=True)  # (token, k) pairs grouped by expert
    counts = torch.bincount(expert_ids.flatten(), minlength=num_experts).tolist()
    flat_weights = weights.flatten()
    out = torch.zeros_like(x)
    start = 0
    for expert, count in enumerate(counts):
        if count == 0:
            continue
        pairs = order[start : start + count]
        tokens = pairs // top_k
        y = expert_mlp(expert, x.index_select(0, tokens))
        out.index_add_(0, tokens, y * flat_weights[pairs, None])
        start += count
    return out


class SparseMoE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.top_k, self.norm_topk_prob = config.num_experts_per_tok, config.norm_topk_prob
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)  # the router
        self.experts = Experts(config.num_experts, config.hidden_size, config.moe_intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.gate(x)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        weights, expert_ids = probs.topk(self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return self.experts(x, expert_ids, weights.to(x.dtype))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.is_moe_layer(layer_idx):
            self.mlp = SparseMoE(config)
        else:
            self.mlp = MLP(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor, batch: ForwardBatch, plan: AttentionPlan, cache: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), batch, plan, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class QwenModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        # Uninitialised: weights always come from a checkpoint, and normal_ on the meta device (where the loaders
        # build the model) imports torch._dynamo: ~1 s and ~70 MB resident.
        shape = (config.vocab_size, config.hidden_size)
        self.embed_tokens = nn.Embedding(*shape, _weight=torch.empty(shape))
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class QwenForCausalLM(nn.Module):
    fused_decode = None  # set by the GGUF loader when a decode step's layers can run as one C call
    kv_cache_dtype = None  # the KV cache's dtype where it is not the model's (the GGUF loader: float16)

    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config = config
        self.model = QwenModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.rope = RotaryEmbedding(config)
        self.to(dtype)
        self.tie_weights()

    def materialize(self, device="cpu") -> None:
        """Give every parameter still on the meta device uninitialised storage on `device` (what to_empty does,
        without its meta-tensor machinery, which imports sympy and torch.fx: ~1 s and ~35 MB at load time)."""
        made: dict[int, nn.Parameter] = {}
        for module in self.modules():
            for name, param in module._parameters.items():
                if param is not None and param.is_meta:
                    if id(param) not in made:
                        made[id(param)] = nn.Parameter(
                            torch.empty(param.shape, dtype=param.dtype, device=device), requires_grad=False
                        )
                    module._parameters[name] = made[id(param)]

    def tie_weights(self) -> None:
        """Share the embedding with the LM head when the checkpoint says so."""
        if self.config.tie_word_embeddings and isinstance(self.lm_head, nn.Linear):  # not when both read a GGUF map
            self.lm_head.weight = self.model.embed_tokens.weight

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch, kv_caches: list[torch.Tensor]) -> torch.Tensor:
        plan = AttentionPlan.build(batch, self.rope)
        x = self.model.embed_tokens(batch.input_ids)
        fused = self.fused_decode is not None and kv_caches[0].dtype in (torch.float32, torch.float16)
        if fused and plan.decode_mask is not None and _c_kernels(x):
            x = self.fused_decode(x, batch, plan, kv_caches)  # the same layers in one C call (gguf_linear.py)
        else:
            for layer, cache in zip(self.model.layers, kv_caches, strict=True):
                x = layer(x, batch, plan, cache)
        x = self.model.norm(x.index_select(0, batch.logits_indices))  # per-token, so only the rows we return
        return self.lm_head(x).float()

    # The HF weight-name mapping lives in loader.py; these delegates keep the model's loading interface.
    def load_weights(self, weights) -> None:
        from qcoder.model.loader import load_weights

        load_weights(self, weights)

    def _expected_shards(self, name: str) -> set:
        from qcoder.model.loader import expected_shards

        return expected_shards(self.config, name)

    def _destinations(self, hf_name: str) -> list[tuple[str, tuple, set]]:
        from qcoder.model.loader import weight_destinations

        return weight_destinations(self.config, hf_name)
