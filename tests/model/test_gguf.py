"""GGUF checkpoints: dequantized weights, names and shapes, config, tokenizer metadata, errors, and logits parity.

Tiny transformers models are written to GGUF with gguf's own GGUFWriter and HF->GGUF name map (an independent
source of truth for the names), in every supported tensor type. Types gguf.quants can quantize hold the real weights;
the K-quants (which gguf-py cannot quantize) hold random valid blocks.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
import transformers
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

from qcoder.errors import QcoderError
from qcoder.model.gguf import SUPPORTED_TYPES, GGUFCheckpoint, hf_name
from qcoder.model.loader import load_model
from qcoder.model.qwen import ForwardBatch, allocate_kv_cache

# gguf-py cannot quantize these: the files hold random valid blocks instead.
RANDOM_BLOCKS = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)
# Relative L2 error of the logits against the original fp32 model. These random tiny models amplify weight noise
# (measured: F32 1e-6 from summation order, F16 0.001, BF16 0.011, Q8_0 0.034, Q5 0.27, Q4 0.54); the bounds sit
# ~1.5x above that and well below the ~1.4 of unrelated logits, which a wrong block layout would give.
ORIGINAL_TOLERANCE = {
    T.F32: 3e-6, T.F16: 3e-3, T.BF16: 2.5e-2, T.Q8_0: 6e-2, T.Q5_0: 0.4, T.Q5_1: 0.4, T.Q4_0: 0.8, T.Q4_1: 0.8,
}  # fmt: skip

TOKENS = [f"t{i}" for i in range(316)] + ["Ġhello", "ä½ł", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ h", "e l", "ä ½"]
TOKEN_TYPES = [1] * 318 + [3, 3]
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"

# Row lengths (the innermost GGUF dimension) are multiples of 256 so that every tensor fits K-quant blocks.
_CONFIG = dict(
    vocab_size=len(TOKENS),
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    initializer_range=0.1,
)


def tiny_hf(arch: str, **overrides):
    kwargs = dict(_CONFIG, **overrides)
    if arch == "qwen2":
        config, cls = transformers.Qwen2Config(**kwargs), transformers.Qwen2ForCausalLM
    elif arch == "qwen3":
        config, cls = transformers.Qwen3Config(head_dim=64, **kwargs), transformers.Qwen3ForCausalLM
    else:
        moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=256, norm_topk_prob=True)
        config, cls = transformers.Qwen3MoeConfig(head_dim=64, **moe, **kwargs), transformers.Qwen3MoeForCausalLM
    torch.manual_seed(0)
    return cls(config).eval()


def hf_tensors(model) -> dict[str, torch.Tensor]:
    """The model's weights under the names GGUF converters read (transformers 5 fuses each layer's experts)."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("experts.gate_up_proj"):
            gate, up = tensor.chunk(2, dim=1)
            out[name.replace("gate_up_proj", "gate_proj.weight")] = gate
            out[name.replace("gate_up_proj", "up_proj.weight")] = up
        elif name.endswith("experts.down_proj"):
            out[name + ".weight"] = tensor
        elif not (name == "lm_head.weight" and model.config.tie_word_embeddings):
            out[name] = tensor
    return out


def load_into_hf(model, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of hf_tensors: overwrite the model's weights."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("experts.gate_up_proj"):
                stem = name.removesuffix("gate_up_proj")
                param.copy_(torch.cat([tensors[stem + "gate_proj.weight"], tensors[stem + "up_proj.weight"]], dim=1))
            elif name.endswith("experts.down_proj"):
                param.copy_(tensors[name + ".weight"])
            else:
                param.copy_(tensors[name])


def random_blocks(shape, qtype, rng) -> np.ndarray:
    """Random K-quant blocks whose fp16 super-block scales are finite and sized for weights of magnitude ~0.1."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    # byte offsets of the fp16 scale(s) in a block, and the largest |quant * sub-scale| the block can encode
    scale_offsets, largest = {
        T.Q2_K: ((80, 82), 45), T.Q3_K: ((108,), 128), T.Q4_K: ((0, 2), 945), T.Q5_K: ((0, 2), 1953),
        T.Q6_K: ((208,), 4096),
    }[qtype]  # fmt: skip
    blocks = rng.integers(0, 256, (*shape[:-1], shape[-1] // block_size, type_size), dtype=np.uint8)
    for offset in scale_offsets:
        scales = (rng.uniform(0.5, 1.0, (*blocks.shape[:-1], 1)) * 0.2 / largest).astype(np.float16)
        blocks[..., offset : offset + 2] = scales.view(np.uint8)
    return blocks.reshape(*shape[:-1], -1)


def write_gguf(path, model, qtype, *, tokenizer=True, skip_keys=(), extra=None, arch_name=None) -> dict:
    """Write `model` to a GGUF file, matrices in `qtype` and vectors in F32 (as llama.cpp does).

    Returns what the file holds, dequantized by gguf-py: {HF name: fp32 tensor}."""
    c = model.config
    arch = arch_name or {"qwen2": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3moe"}[c.model_type]
    w = gguf.GGUFWriter(str(path), arch)
    metadata = {
        f"{arch}.block_count": c.num_hidden_layers,
        f"{arch}.context_length": c.max_position_embeddings,
        f"{arch}.embedding_length": c.hidden_size,
        f"{arch}.feed_forward_length": c.intermediate_size,
        f"{arch}.attention.head_count": c.num_attention_heads,
        f"{arch}.attention.head_count_kv": c.num_key_value_heads,
        f"{arch}.attention.layer_norm_rms_epsilon": c.rms_norm_eps,
        f"{arch}.rope.freq_base": c.rope_parameters["rope_theta"],
    }
    if c.model_type != "qwen2":
        metadata[f"{arch}.attention.key_length"] = c.head_dim
        metadata[f"{arch}.attention.value_length"] = c.head_dim
    if c.model_type == "qwen3_moe":
        metadata[f"{arch}.expert_count"] = c.num_experts
        metadata[f"{arch}.expert_used_count"] = c.num_experts_per_tok
        metadata[f"{arch}.expert_feed_forward_length"] = c.moe_intermediate_size
    if c.rope_parameters.get("rope_type") == "yarn":
        metadata[f"{arch}.rope.scaling.type"] = "yarn"
        metadata[f"{arch}.rope.scaling.factor"] = c.rope_parameters["factor"]
        metadata[f"{arch}.rope.scaling.original_context_length"] = c.rope_parameters["original_max_position_embeddings"]
    metadata.update(extra or {})
    for key, value in metadata.items():
        if key in skip_keys:
            continue
        if isinstance(value, list):
            w.add_array(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_uint32(key, value)
    if tokenizer:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("qwen2")
        w.add_token_list(TOKENS)
        w.add_token_merges(MERGES)
        w.add_token_types(TOKEN_TYPES)
        w.add_eos_token_id(319)
        w.add_pad_token_id(316)
        w.add_add_bos_token(False)
        w.add_chat_template(CHAT_TEMPLATE)

    arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
    names = gguf.get_tensor_name_map(arch_enum, c.num_hidden_layers)
    rng = np.random.default_rng(0)
    stored = {}
    for name, tensor in hf_tensors(model).items():
        array = tensor.detach().float().numpy()
        tensor_type = qtype if array.ndim > 1 else T.F32
        if tensor_type in RANDOM_BLOCKS:
            data = random_blocks(array.shape, tensor_type, rng)
        else:
            data = gguf.quants.quantize(array, tensor_type)
        raw_dtype = tensor_type if data.dtype == np.uint8 else None
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), data, raw_dtype=raw_dtype)
        stored[name] = torch.from_numpy(gguf.quants.dequantize(data, tensor_type).reshape(array.shape).copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def logits(model, config, prompt: list[int]) -> torch.Tensor:
    batch = ForwardBatch.for_new_prompts([prompt], all_logits=True)
    return model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))


def hf_logits(model, prompt: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([prompt])).logits[0]


PROMPT = torch.randint(0, len(TOKENS), (24,), generator=torch.Generator().manual_seed(1)).tolist()


# --- weights ---


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_tensors_are_the_reference_dequantization_in_hf_names_and_shapes(tmp_path, qtype):
    model = tiny_hf("qwen3")
    stored = write_gguf(tmp_path / "m.gguf", model, qtype)
    loaded = dict(GGUFCheckpoint(tmp_path / "m.gguf").tensors())
    assert set(loaded) == set(stored) == set(model.state_dict())
    for name, tensor in loaded.items():
        assert tensor.dtype == torch.float32
        assert tensor.shape == model.state_dict()[name].shape, name
        torch.testing.assert_close(tensor, stored[name], atol=0, rtol=0, msg=name)


def test_experts_are_stacked_in_hf_layout(tmp_path):
    model = tiny_hf("qwen3_moe")
    stored = write_gguf(tmp_path / "m.gguf", model, T.Q8_0)
    ckpt = GGUFCheckpoint(tmp_path / "m.gguf")
    loaded = dict(ckpt.tensors())
    assert loaded["model.layers.1.mlp.experts.gate_proj.weight"].shape == (4, 256, 256)  # [E, I, H]
    assert loaded["model.layers.1.mlp.experts.down_proj.weight"].shape == (4, 256, 256)  # [E, H, I]
    assert loaded["model.layers.1.mlp.gate.weight"].shape == (4, 256)
    for name in stored:
        torch.testing.assert_close(loaded[name], stored[name], atol=0, rtol=0)
    raw = ckpt.raw("model.layers.0.mlp.experts.up_proj.weight")
    assert (raw.gguf_name, raw.type, raw.shape) == ("blk.0.ffn_up_exps.weight", T.Q8_0, (4, 256, 256))


def test_raw_gives_the_stored_blocks(tmp_path):
    model = tiny_hf("qwen2")
    write_gguf(tmp_path / "m.gguf", model, T.Q8_0)
    raw = GGUFCheckpoint(tmp_path / "m.gguf").raw("model.layers.0.mlp.down_proj.weight")
    assert (raw.gguf_name, raw.type, raw.shape) == ("blk.0.ffn_down.weight", T.Q8_0, (256, 512))
    assert raw.data.dtype == np.uint8 and raw.data.shape == (256, 512 // 32 * 34)
    # Q8_0 block: fp16 scale then 32 int8 quants; the first block decodes to the first 32 weights of row 0.
    scale = float(raw.data[0, :2].view(np.float16)[0])
    first = raw.data[0, 2:34].view(np.int8).astype(np.float32) * scale
    expected = model.state_dict()["model.layers.0.mlp.down_proj.weight"][0, :32]
    torch.testing.assert_close(torch.from_numpy(first), expected, atol=scale, rtol=0)


def test_unsupported_tensor_type_names_tensor_and_type(tmp_path):
    model = tiny_hf("qwen2")
    path = tmp_path / "m.gguf"
    write_gguf(path, model, T.Q8_0)
    w = gguf.GGUFWriter(str(tmp_path / "iq.gguf"), "qwen2")
    ckpt = GGUFCheckpoint(path)
    for key, value in ckpt.metadata.items():
        if key.startswith("qwen2."):
            (w.add_float32 if isinstance(value, float) else w.add_uint32)(key, value)
    for name in ckpt.tensor_names:
        raw = ckpt.raw(name)
        if raw.gguf_name == "blk.1.attn_v.weight":
            block_size, type_size = GGML_QUANT_SIZES[T.IQ4_NL]
            data = np.zeros((raw.shape[0], raw.shape[1] // block_size * type_size), dtype=np.uint8)
            w.add_tensor(raw.gguf_name, data, raw_dtype=T.IQ4_NL)
        else:
            w.add_tensor(raw.gguf_name, np.array(raw.data), raw_dtype=raw.type if raw.data.dtype == np.uint8 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(QcoderError, match=r"iq\.gguf: tensor 'blk\.1\.attn_v\.weight' has type IQ4_NL") as e:
        dict(GGUFCheckpoint(tmp_path / "iq.gguf").tensors())
    assert "\n" not in str(e.value)


def test_hf_name_covers_the_gguf_name_map():
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3MOE, 3)
    for hf in [
        "model.layers.2.self_attn.k_norm.weight",
        "model.layers.2.mlp.experts.down_proj.weight",
        "lm_head.weight",
    ]:
        assert hf_name(names.get_name(hf, try_suffixes=(".weight",))) == hf
    assert hf_name("blk.0.attn_q.bias") == "model.layers.0.self_attn.q_proj.bias"
    assert hf_name("rope_freqs.weight") is None


# --- logits parity ---


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_logits_match_transformers(tmp_path, arch, qtype):
    original = tiny_hf(arch)
    stored = write_gguf(tmp_path / "m.gguf", original, qtype)
    expected_original = hf_logits(original, PROMPT)
    model, config = load_model(tmp_path / "m.gguf")
    ours = logits(model, config, PROMPT)

    # (a) exactly the model transformers runs with the same (dequantized) weights
    load_into_hf(original, stored)
    torch.testing.assert_close(ours, hf_logits(original, PROMPT), atol=1e-4, rtol=0)
    # (b) close to the unquantized model, as far as the type allows (K-quant files hold random weights)
    if qtype in ORIGINAL_TOLERANCE:
        error = (ours - expected_original).norm() / expected_original.norm()
        assert error < ORIGINAL_TOLERANCE[qtype]


@pytest.mark.parametrize(
    "arch, overrides, qtype",
    [
        ("qwen2", {"tie_word_embeddings": True}, T.Q8_0),
        ("qwen3", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8}},
         T.Q4_0),
        ("qwen3_moe", {}, T.Q8_0),
        ("qwen3_moe", {}, T.Q4_K),
    ],
    ids=["qwen2-tied", "qwen3-yarn", "qwen3moe-q8_0", "qwen3moe-q4_k"],
)  # fmt: skip
def test_variant_logits_match_transformers(tmp_path, arch, overrides, qtype):
    hf = tiny_hf(arch, **overrides)
    stored = write_gguf(tmp_path / "m.gguf", hf, qtype)
    model, config = load_model(tmp_path / "m.gguf")
    load_into_hf(hf, stored)
    torch.testing.assert_close(logits(model, config, PROMPT), hf_logits(hf, PROMPT), atol=1e-4, rtol=0)


# --- config and tokenizer ---


def test_qwen2_config(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2", tie_word_embeddings=True), T.F16)
    ckpt = GGUFCheckpoint(tmp_path / "m.gguf")
    c = ckpt.config
    assert ckpt.architecture == "qwen2" and c.architecture == "qwen2"
    assert (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers) == (320, 256, 512, 2)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (4, 2, 64)  # head_dim derived
    assert c.rms_norm_eps == pytest.approx(1e-6) and c.rope_theta == 10000.0 and c.rope_scaling is None
    assert c.max_position_embeddings == 4096
    assert c.tie_word_embeddings and c.attention_bias and not c.qk_norm and c.num_experts == 0
    assert ckpt.metadata["qwen2.block_count"] == 2
    assert "tokenizer.ggml.tokens" not in ckpt.metadata  # read on demand only


def test_qwen3_yarn_config(tmp_path):
    rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024, "rope_theta": 1e6}
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen3", rope_parameters=rope), T.Q8_0)
    c = GGUFCheckpoint(tmp_path / "m.gguf").config
    assert c.architecture == "qwen3" and c.head_dim == 64 and c.qk_norm and not c.attention_bias
    assert not c.tie_word_embeddings and c.rope_theta == 1e6
    assert c.rope_scaling == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}


def test_qwen3moe_config(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen3_moe"), T.Q8_0)
    ckpt = GGUFCheckpoint(tmp_path / "m.gguf")
    c = ckpt.config
    assert ckpt.architecture == "qwen3moe" and c.architecture == "qwen3_moe"
    assert (c.num_experts, c.num_experts_per_tok, c.moe_intermediate_size) == (4, 2, 256)
    assert c.norm_topk_prob and c.decoder_sparse_step == 1 and c.mlp_only_layers == [] and c.qk_norm


def test_tokenizer_metadata_round_trips(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0)
    meta = GGUFCheckpoint(tmp_path / "m.gguf").tokenizer_metadata()
    assert meta == dict(
        model="gpt2",
        tokens=TOKENS,
        merges=MERGES,
        token_types=TOKEN_TYPES,
        pre="qwen2",
        bos_token_id=None,
        eos_token_id=319,
        padding_token_id=316,
        add_bos_token=False,
        chat_template=CHAT_TEMPLATE,
    )


def test_metadata_arrays_read_as_the_stock_reader_reads_them(tmp_path):
    path = tmp_path / "m.gguf"
    extra = {"general.tags": ["code", "ünïcode", ""], "test.floats": [0.5, -2.0], "test.bools": [True, False]}
    write_gguf(path, tiny_hf("qwen2"), T.Q8_0, extra=extra)
    ckpt = GGUFCheckpoint(path)
    stock = gguf.GGUFReader(path)
    for key, value in extra.items():
        assert ckpt.metadata[key] == stock.fields[key].contents() == value
    meta = ckpt.tokenizer_metadata()
    assert meta["tokens"] == stock.fields["tokenizer.ggml.tokens"].contents()
    assert meta["token_types"] == stock.fields["tokenizer.ggml.token_type"].contents()


def test_a_warm_open_reads_the_cached_header(tmp_path, monkeypatch):
    from qcoder.model import gguf as gguf_module

    parsed = []

    class CountingReader(gguf_module._Reader):
        def __init__(self, *args, **kwargs):
            parsed.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf_module, "_Reader", CountingReader)
    monkeypatch.setenv("QCODER_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "m.gguf"

    def fresh_open():
        gguf_module._open_unchanged.cache_clear()  # the in-process cache would hide the file cache
        return gguf_module.open_checkpoint(path)

    write_gguf(path, tiny_hf("qwen2"), T.Q4_K, extra={"test.floats": [0.5, -2.0], "test.bools": [True, False]})
    cold = fresh_open()
    warm = fresh_open()
    assert len(parsed) == 1  # the second open read the cached header, not the file's
    assert warm.metadata == cold.metadata and warm.metadata["tokenizer.ggml.add_bos_token"] is False
    assert [type(v) for v in warm.metadata["test.bools"]] == [bool, bool]
    assert warm.config == cold.config and warm.tensor_names == cold.tensor_names
    for name in cold.tensor_names:
        a, b = cold.raw(name), warm.raw(name)
        assert (a.gguf_name, a.type, a.shape) == (b.gguf_name, b.type, b.shape)
        assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)
    assert warm.tokenizer_metadata() == cold.tokenizer_metadata()  # the token arrays are read from the file
    assert len(parsed) == 2

    [entry] = (tmp_path / "cache" / "gguf-headers").iterdir()
    entry.write_text('{"metadata": {')  # damaged (a full disk): parsed again and rewritten
    assert fresh_open().config == cold.config and len(parsed) == 3
    assert fresh_open().config == cold.config and len(parsed) == 3

    write_gguf(path, tiny_hf("qwen3"), T.Q8_0)  # the same path, another model: never the stale header
    assert fresh_open().architecture == "qwen3" and len(parsed) == 4


def test_tokenizer_metadata_missing_tokens(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0, tokenizer=False)
    with pytest.raises(QcoderError, match=r"m\.gguf: missing metadata key 'tokenizer\.ggml\.tokens'"):
        GGUFCheckpoint(tmp_path / "m.gguf").tokenizer_metadata()


# --- errors ---


def one_line_error(path, match: str) -> None:
    with pytest.raises(QcoderError, match=match) as e:
        GGUFCheckpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_not_a_gguf_file(tmp_path):
    (tmp_path / "a.gguf").write_text("{'this': 'is json'}\n")
    one_line_error(tmp_path / "a.gguf", "not a readable GGUF file")
    (tmp_path / "empty.gguf").write_bytes(b"")
    one_line_error(tmp_path / "empty.gguf", "not a readable GGUF file")
    one_line_error(tmp_path / "missing.gguf", "no such file")


def test_truncated_file_at_any_point(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0)
    data = (tmp_path / "m.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    # every few bytes through the header (metadata and tensor index), then inside the tensor data
    for length in [*range(1, 12_000, 37), len(data) // 2, len(data) - 200]:
        cut.write_bytes(data[:length])
        one_line_error(cut, "not a readable GGUF file")


def test_corrupt_tensor_type(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0)
    data = bytearray((tmp_path / "m.gguf").read_bytes())
    # the tensor index entry: name, n_dims (u32), dims (u64 each), type (u32), offset (u64)
    name = b"blk.0.attn_q.weight"
    at = data.index(name) + len(name) + 4 + 2 * 8
    data[at : at + 4] = (250).to_bytes(4, "little")
    (tmp_path / "m.gguf").write_bytes(bytes(data))
    one_line_error(tmp_path / "m.gguf", "not a readable GGUF file")


def test_corrupt_metadata_string(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0, extra={"general.name": "qcoder-test"})
    data = (tmp_path / "m.gguf").read_bytes().replace(b"qcoder-test", b"\xff" * 11)
    (tmp_path / "m.gguf").write_bytes(data)
    one_line_error(tmp_path / "m.gguf", "not a readable GGUF file")


def test_unknown_architecture(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0, arch_name="llama")
    one_line_error(tmp_path / "m.gguf", r"unsupported architecture 'llama'")


@pytest.mark.parametrize("key", ["qwen2.block_count", "qwen2.attention.layer_norm_rms_epsilon"])
def test_missing_metadata_key(tmp_path, key):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0, skip_keys=(key,))
    one_line_error(tmp_path / "m.gguf", f"missing metadata key '{key}'")


def test_split_file(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0, extra={"split.count": 3})
    one_line_error(tmp_path / "m.gguf", "one of 3 split GGUF files")


def test_wrongly_typed_metadata(tmp_path):
    write_gguf(tmp_path / "m.gguf", tiny_hf("qwen2"), T.Q8_0, extra={"qwen2.block_count": "two"})
    one_line_error(tmp_path / "m.gguf", r"metadata key 'qwen2\.block_count' is 'two', expected int")
