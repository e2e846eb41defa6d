"""qcoder's model against Hugging Face transformers on tiny random checkpoints (fp32, tolerance 1e-4)."""

from __future__ import annotations

import json

import pytest
import torch

from qcoder.model.config import ModelConfig
from qcoder.model.loader import expected_shards, load_model, weight_destinations
from qcoder.model.qwen import ForwardBatch, QwenForCausalLM, allocate_kv_cache
from qcoder.model.rope import yarn_inv_freq
from tests.conftest import needs_shared_data

from .conftest import REAL_QWEN3_CODER, VARIANTS, tiny_hf_model

ATOL = 1e-4
PROMPT_LENS = [5, 40, 23]  # 40 > original_max_position_embeddings (16) of the YaRN variants


def prompts(lens=PROMPT_LENS, vocab=320) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(1, vocab, (n,), generator=g).tolist() for n in lens]


def hf_padded_logits(hf, batch_prompts) -> list[torch.Tensor]:
    """transformers on one right-padded batch with an attention mask; returns each prompt's real rows."""
    width = max(len(p) for p in batch_prompts)
    ids = torch.zeros(len(batch_prompts), width, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(batch_prompts):
        ids[b, : len(p)] = torch.tensor(p)
        mask[b, : len(p)] = 1
    with torch.no_grad():
        logits = hf(input_ids=ids, attention_mask=mask).logits
    return [logits[b, : len(p)] for b, p in enumerate(batch_prompts)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prefill_logits_match_transformers(tiny_model_dir, variant):
    arch, overrides = VARIANTS[variant]
    model, config = load_model(tiny_model_dir(variant))
    batch_prompts = prompts()
    batch = ForwardBatch.for_new_prompts(batch_prompts, all_logits=True)
    logits = model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))

    expected = torch.cat(hf_padded_logits(tiny_hf_model(arch, **overrides), batch_prompts))
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)


def test_a_long_step_through_the_mlp_in_parts_matches_transformers(tiny_model_dir, monkeypatch):
    from qcoder.model import qwen

    monkeypatch.setattr(qwen, "MLP_PART_BYTES", 1)  # parts of 64 rows: the 68 prompt tokens take two
    model, config = load_model(tiny_model_dir("qwen2"))
    batch = ForwardBatch.for_new_prompts(prompts(), all_logits=True)
    logits = model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))
    arch, overrides = VARIANTS["qwen2"]
    expected = torch.cat(hf_padded_logits(tiny_hf_model(arch, **overrides), prompts()))
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)


def generate_greedy(model: QwenForCausalLM, config: ModelConfig, batch_prompts, new_tokens: int) -> list[list[int]]:
    """Prefill then one decode step per token through the KV cache, with the blocks handed out shuffled."""
    block_size = 8
    blocks_per_seq = -(-(max(map(len, batch_prompts)) + new_tokens) // block_size)
    num_blocks = len(batch_prompts) * blocks_per_seq
    shuffled = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(2))
    block_tables = shuffled.view(len(batch_prompts), blocks_per_seq)
    caches = allocate_kv_cache(config, num_blocks * block_size, torch.float32)

    batch = ForwardBatch.from_sequences(batch_prompts, [0] * len(batch_prompts), block_tables, block_size)
    generated: list[list[int]] = [[] for _ in batch_prompts]
    for _ in range(new_tokens):
        next_tokens = model(batch, caches).argmax(dim=-1).tolist()
        for out, token in zip(generated, next_tokens, strict=True):
            out.append(token)
        batch = batch.decode_step(next_tokens)
    return generated


@pytest.mark.parametrize("variant", ["qwen2", "qwen3-tied", "qwen3_moe", "qwen3-yarn"])
def test_greedy_generation_matches_transformers_generate(tiny_model_dir, variant):
    arch, overrides = VARIANTS[variant]
    model, config = load_model(tiny_model_dir(variant))
    batch_prompts = prompts([5, 12, 9])
    ours = generate_greedy(model, config, batch_prompts, new_tokens=32)

    hf = tiny_hf_model(arch, **overrides)
    for prompt, tokens in zip(batch_prompts, ours, strict=True):
        with torch.no_grad():
            out = hf.generate(
                torch.tensor([prompt]), max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0
            )
        assert tokens == out[0, len(prompt) :].tolist()


def test_mixed_step_with_cached_prefix_matches_full_prefill(tiny_model_dir):
    """One step holding a decode, a second prompt chunk over a cached first chunk, and a fresh prompt."""
    model, config = load_model(tiny_model_dir("qwen3_moe"))
    a, b, c = prompts([9, 30, 7])
    full = [rows for rows in _prefill_all_logits(model, config, [a + [11], b, c])]

    block_size = 4
    block_tables = torch.tensor([[5, 0, 7, 0, 0, 0, 0, 0], [1, 9, 3, 8, 2, 10, 11, 4], [6, 12, 0, 0, 0, 0, 0, 0]])
    caches = allocate_kv_cache(config, 13 * block_size, torch.float32)
    first = ForwardBatch.from_sequences([a, b[:13]], [0, 0], block_tables[:2], block_size, all_logits=True)
    model(first, caches)
    mixed = ForwardBatch.from_sequences([[11], b[13:], c], [9, 13, 0], block_tables, block_size, all_logits=True)
    logits = model(mixed, caches)

    expected = torch.cat([full[0][-1:], full[1][13:], full[2]])
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)


def _prefill_all_logits(model, config, batch_prompts) -> list[torch.Tensor]:
    batch = ForwardBatch.for_new_prompts(batch_prompts, all_logits=True)
    logits = model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))
    return list(logits.split(batch.query_lens))


def test_kv_cache_is_written_in_place_at_the_slot_mapping(tiny_model_dir):
    model, config = load_model(tiny_model_dir("qwen2"))
    batch = ForwardBatch.for_new_prompts(prompts([3, 6]), block_size=4)  # blocks 0-1 and 2-3
    caches = allocate_kv_cache(config, batch.num_slots + 8, torch.float32)
    model(batch, caches)
    written = torch.zeros(batch.num_slots + 8, dtype=torch.bool)
    written[batch.slot_mapping] = True
    assert batch.slot_mapping.tolist() == [0, 1, 2, 8, 9, 10, 11, 12, 13]
    for cache in caches:
        used = cache.abs().sum(dim=(0, 2, 3)) > 0
        assert torch.equal(used, written)


@pytest.mark.parametrize("hf_layout", ["fused", "stacked"])
def test_moe_loads_stacked_expert_tensors(tiny_model_dir, hf_layout):
    """Experts as transformers 5 holds them ([E, 2I, H] gate_up_proj) or stacked per projection ([E, I, H])."""
    hf = tiny_hf_model("qwen3_moe", **VARIANTS["qwen3_moe"][1])
    state = dict(hf.state_dict())
    if hf_layout == "stacked":
        for name in [n for n in state if n.endswith("experts.gate_up_proj")]:
            gate, up = state.pop(name).chunk(2, dim=1)
            state[name.replace("gate_up_proj", "gate_proj.weight")] = gate
            state[name.replace("gate_up_proj", "up_proj.weight")] = up
            down = name.replace("gate_up_proj", "down_proj")
            state[down + ".weight"] = state.pop(down)
    config = ModelConfig.from_hf_dict(json.loads((tiny_model_dir("qwen3_moe") / "config.json").read_text()))
    model = QwenForCausalLM(config)
    model.load_weights(state.items())

    batch_prompts = prompts()
    batch = ForwardBatch.for_new_prompts(batch_prompts, all_logits=True)
    logits = model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))
    torch.testing.assert_close(logits, torch.cat(hf_padded_logits(hf, batch_prompts)), atol=ATOL, rtol=0)


def test_sharded_checkpoint_loads(tmp_path):
    from tests.conftest import tiny_checkpoint

    tiny_checkpoint("qwen3", tmp_path, max_shard_size="60KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    model, config = load_model(tmp_path)
    batch_prompts = prompts([6])
    logits = model(
        ForwardBatch.for_new_prompts(batch_prompts, all_logits=True), allocate_kv_cache(config, 16, torch.float32)
    )
    torch.testing.assert_close(logits, hf_padded_logits(tiny_hf_model("qwen3"), batch_prompts)[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
        {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096, "truncate": False},
        {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64, "beta_fast": 16, "beta_slow": 2},
        {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 64,
            "mscale": 1.0,
            "mscale_all_dim": 0.5,
        },
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "attention_factor": 1.3},
        {"rope_type": "yarn", "factor": None, "original_max_position_embeddings": 128},
    ],
)
def test_yarn_frequencies_match_transformers(rope):
    import transformers
    from transformers.modeling_rope_utils import _compute_yarn_parameters

    hf_config = transformers.Qwen3Config(
        head_dim=64, max_position_embeddings=1024, rope_parameters=dict(rope, rope_theta=1_000_000.0)
    )
    expected_inv_freq, expected_factor = _compute_yarn_parameters(hf_config)
    config = ModelConfig.from_hf_dict(hf_config.to_dict())
    inv_freq, factor = yarn_inv_freq(64, config.rope_theta, config.rope_scaling, config.max_position_embeddings)
    torch.testing.assert_close(inv_freq, expected_inv_freq, atol=0, rtol=1e-6)
    assert factor == pytest.approx(expected_factor, rel=1e-12)


@needs_shared_data
def test_real_qwen3_coder_config_parses():
    config_file = REAL_QWEN3_CODER / "config.json"
    config = ModelConfig.from_hf_dict(json.loads(config_file.read_text()), source=str(config_file))
    assert config.architecture == "qwen3_moe"
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (48, 2048, 151936)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (32, 4, 128)
    assert (config.num_experts, config.num_experts_per_tok, config.moe_intermediate_size) == (128, 8, 768)
    assert config.norm_topk_prob and config.qk_norm and not config.attention_bias and not config.tie_word_embeddings
    assert (config.rope_theta, config.rope_scaling, config.max_position_embeddings) == (1e7, None, 262144)
    assert config.rms_norm_eps == 1e-6 and config.mlp_only_layers == [] and config.decoder_sparse_step == 1
    assert all(config.is_moe_layer(i) for i in range(48))


@needs_shared_data
def test_real_checkpoint_tensor_names_all_have_a_home():
    """Every tensor name of the published Qwen3-Coder-30B-A3B checkpoint maps onto a parameter of our model."""
    config = ModelConfig.from_hf_dict(json.loads((REAL_QWEN3_CODER / "config.json").read_text()))
    with torch.device("meta"):
        model = QwenForCausalLM(config)
    params = dict(model.named_parameters())
    weight_map = json.loads((REAL_QWEN3_CODER / "model.safetensors.index.json").read_text())["weight_map"]
    filled: dict[str, set] = {name: set() for name in params}
    for hf_name in weight_map:
        for name, _, shards in weight_destinations(config, hf_name):
            filled[name].update(shards)
    assert all(filled[name] == expected_shards(config, name) for name in params)


@pytest.mark.parametrize(
    "rope_fields, theta, scaling",
    [
        ({"rope_theta": 5e5, "rope_scaling": None}, 5e5, None),
        ({"rope_parameters": {"rope_type": "default", "rope_theta": 2e4}}, 2e4, None),
        (
            {
                "rope_theta": 1e6,
                "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
            },
            1e6,
            {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
        ),
        (
            {
                "rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 3e4},
                "max_position_embeddings": 4096,
            },
            3e4,
            {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 4096},
        ),
    ],
)
def test_config_reads_rope_from_rope_scaling_or_rope_parameters(rope_fields, theta, scaling):
    d = dict(
        architectures=["Qwen3ForCausalLM"],
        vocab_size=10,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        head_dim=4,
        **rope_fields,
    )
    config = ModelConfig.from_hf_dict(d)
    assert (config.rope_theta, config.rope_scaling) == (theta, scaling)


def test_batch_refuses_a_sequence_longer_than_its_blocks():
    batch = ForwardBatch.for_new_prompts([[1, 2, 3]], block_size=4).decode_step([4])
    assert (batch.positions.tolist(), batch.slot_mapping.tolist(), batch.context_lens) == ([3], [3], [4])
    with pytest.raises(ValueError, match="does not fit"):
        batch.decode_step([5])


@pytest.mark.parametrize("native_bf16", [True, False])
def test_long_prompt_attention_dtype_keeps_parity(tiny_model_dir, monkeypatch, native_bf16):
    """A prompt past BF16_CONTEXT is attended in bf16 where the CPU has it natively (faster, error ~1e-3), and in
    fp32 elsewhere (there, to the usual tolerance)."""
    from qcoder.model import attention, cpu_kernels

    monkeypatch.setattr(cpu_kernels, "has_bf16", lambda: native_bf16)
    arch, overrides = VARIANTS["qwen2"]
    model, config = load_model(tiny_model_dir("qwen2"))
    prompt = prompts([attention.BF16_CONTEXT + 30])
    batch = ForwardBatch.for_new_prompts(prompt, all_logits=True)
    logits = model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))
    expected = hf_padded_logits(tiny_hf_model(arch, **overrides), prompt)[0]
    if native_bf16:  # bf16 inputs to the scores: about 2% of the logits' range here, and the same top token nearly always
        assert (logits - expected).abs().max() < 0.05 * expected.abs().max()
        assert (logits.argmax(-1) == expected.argmax(-1)).float().mean() > 0.97
    else:
        torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)
