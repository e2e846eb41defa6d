"""Weight-only quantization: each layer against its own dequantized weight, GGUF blocks mapped exactly onto int4
groups, and whole tiny models quantized against the unquantized path.

int4 layers have two backends (the C kernels on Q4_1 blocks, or PyTorch's int4 kernel): the `int4_backend` fixture
runs a test on each. CI runs this file again under ATEN_CPU_CAPABILITY=avx2, whose int4 packing differs."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf import quants as gguf_quants

from qcoder.errors import QcoderError
from qcoder.model import cpu_kernels
from qcoder.model.gguf import RawTensor
from qcoder.model.loader import load_model
from qcoder.model.quant import (
    PREFILL_ROWS,
    Int4Linear,
    Int8Linear,
    QuantExperts,
    gguf_int4_groups,
    gguf_tensors,
    int4_groups,
    load_quantized,
    quantize_model,
)
from qcoder.model.qwen import ForwardBatch, allocate_kv_cache

SHAPES = [(72, 96), (72, 160), (64, 100), (16, 40)]  # (out, in); in 100 and 40 are not multiples of the group
ROWS = [1, 8, PREFILL_ROWS + 3]  # the last takes the dequantize-and-GEMM path


@pytest.fixture(params=["c-kernels", "pytorch"])
def int4_backend(request):
    """Int4Linear layers built within the test use the C kernels, or PyTorch's int4 kernel."""
    if request.param == "c-kernels":
        if cpu_kernels.unavailable():
            pytest.skip(cpu_kernels.unavailable())
        yield request.param
    else:
        with cpu_kernels.disabled():
            yield request.param


def _close(y: torch.Tensor, ref: torch.Tensor, rel: float) -> None:
    """Within `rel` of the output's scale: the layers compute in bf16, so errors are relative, not elementwise."""
    err = (y - ref).abs().max().item()
    assert err <= rel * ref.abs().max().item(), f"max error {err} vs scale {ref.abs().max().item()}"


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("shape", SHAPES)
def test_int8_linear_matches_its_dequantized_weight(shape, rows):
    torch.manual_seed(0)
    w, b, x = torch.randn(shape), torch.randn(shape[0]), torch.randn(rows, shape[1])
    layer = Int8Linear(w, b)
    assert layer.weight.dtype == torch.int8
    deq = layer.weight.float()[:, : shape[1]] * layer.scales.float()[:, None]
    y = layer(x)
    assert y.shape == (rows, shape[0]) and y.dtype == torch.float32
    _close(y, x.bfloat16().float() @ deq.T + b, 0.01)  # bf16 activations and output
    _close(y, x @ w.T + b, 0.03)  # and the int8 rounding on top
    assert torch.allclose(layer(x[None]), y[None])  # any leading shape


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("shape", SHAPES)
def test_int4_linear_matches_its_dequantized_weight(shape, rows, int4_backend):
    torch.manual_seed(0)
    n, k = shape
    w, x = torch.randn(shape), torch.randn(rows, k)
    layer = Int4Linear.from_float(w)
    assert layer.native == (int4_backend == "c-kernels")
    y = layer(x)
    assert y.shape == (rows, n)
    k_pad = -(-k // 32) * 32
    q, scale, offset = int4_groups(torch.nn.functional.pad(w, (0, k_pad - k)))
    deq = (q.float().view(n, -1, 32) * scale[..., None] + offset[..., None]).view(n, k_pad)[:, :k]
    _close(y, x.bfloat16().float() @ deq.T, 0.02)
    _close(y, x @ w.T, 0.15)  # 4 bits per weight: a coarse but bounded error
    # the weight the layer reports is the one it computes with, on either backend and any dispatch level
    assert torch.allclose(layer.dequantize()[:n, :k], deq, atol=0.01 * deq.abs().max().item())


def _random_blocks(kind, rows: int, cols: int) -> RawTensor:
    """Random bytes in `kind`'s block layout with sane fp16 scales."""
    rng = np.random.default_rng(int(kind))
    per, size = {T.Q4_0: (32, 18), T.Q4_1: (32, 20), T.Q4_K: (256, 144)}[kind]
    halves = 1 if kind == T.Q4_0 else 2
    data = rng.integers(0, 256, (rows, cols // per, size), dtype=np.uint8)
    scales = rng.uniform(-0.05, 0.05, (rows, cols // per, halves)).astype(np.float16)
    data[:, :, : 2 * halves] = scales.view(np.uint8).reshape(rows, cols // per, 2 * halves)
    return RawTensor("w", "w", kind, (rows, cols), data.reshape(rows, -1))


@pytest.mark.parametrize("kind", [T.Q4_0, T.Q4_1, T.Q4_K])
def test_gguf_4bit_blocks_map_exactly_onto_int4_groups(kind, int4_backend):
    raw = _random_blocks(kind, 64, 512)
    ref = torch.from_numpy(gguf_quants.dequantize(raw.data, kind)).reshape(64, 512)
    q, scale, offset = gguf_int4_groups(raw)
    assert int(q.max()) <= 15
    assert torch.equal(q.float().view(64, -1, 32) * scale[..., None] + offset[..., None], ref.view(64, -1, 32))
    x = torch.randn(40, 512)  # decode and prefill rows
    layer = Int4Linear(q, scale, offset)
    _close(layer(x[:4]), x[:4] @ ref.T, 0.01)  # only the rounding of scales and activations
    _close(layer(x), x @ ref.T, 0.01)


def _logits(model, config, ids):
    batch = ForwardBatch.for_new_prompts(ids, all_logits=True)
    return model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))


# Random 3-layer models are chaotic (median top-1 margin 0.2 for a logit std of 1.2): even bf16 weights alone flip
# 4% of the tied model's top-1 tokens, so the tied and MoE variants get a looser bound than the plain one.
@pytest.mark.parametrize("variant,min_agree", [("qwen2", 0.95), ("qwen2-tied", 0.85), ("qwen3_moe", 0.85)])
def test_int8_tiny_model_agrees_on_top1(tiny_model_dir, variant, min_agree):
    path = tiny_model_dir(variant)
    ids = torch.randint(0, 320, (2, 40), generator=torch.Generator().manual_seed(1)).tolist()
    model, config = load_model(path)
    ref = _logits(model, config, ids)
    quantize_model(model, "int8")
    assert not any(isinstance(m, torch.nn.Linear) for n, m in model.named_modules() if not n.endswith("mlp.gate"))
    out = _logits(model, config, ids)
    agree = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert agree >= min_agree


def test_int4_model_and_moe_experts(tiny_model_dir, int4_backend):
    model, config = load_model(tiny_model_dir("qwen3_moe"))
    ids = [list(range(1, 30))]
    ref = _logits(model, config, ids)
    quantize_model(model, "int4")
    assert isinstance(model.model.layers[0].mlp.experts, QuantExperts)
    assert isinstance(model.model.layers[0].mlp.experts.gate_up[0], Int4Linear)
    assert isinstance(model.model.layers[1].mlp.down_proj, Int4Linear)  # the dense layer
    assert isinstance(model.lm_head, Int8Linear)  # the head stays int8 by default
    out = _logits(model, config, ids)
    # 4-bit min/max groups of Gaussian weights err ~9% per weight: on a random model top-1 is a coin toss, but the
    # logits must still follow the reference closely.
    assert torch.cosine_similarity(out.flatten(), ref.flatten(), dim=0).item() >= 0.9


def test_tied_head_shares_the_int8_embedding(tiny_model_dir):
    model, _ = load_model(tiny_model_dir("qwen2-tied"))
    quantize_model(model, "int8")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert next(model.parameters()).dtype == torch.float32  # the engine reads the model dtype from here


def test_auto_follows_the_gguf_source_types(tiny_model_dir):
    model, config = load_model(tiny_model_dir("qwen2"))
    types = {"q_proj": "Q4_K", "k_proj": "Q4_K", "v_proj": "Q6_K", "gate_proj": "Q4_0", "up_proj": "Q4_0"}
    hf = {}
    for layer in range(config.num_hidden_layers):
        for proj, kind in types.items():
            part = "self_attn" if proj[0] in "qkv" else "mlp"
            hf[f"model.layers.{layer}.{part}.{proj}.weight"] = kind
    fake = SimpleNamespace(tensor_names=list(hf), raw=lambda n: SimpleNamespace(type=SimpleNamespace(name=hf[n])))
    # no blocks to map exactly here, so int4 layers are requantized from the loaded weights
    quantize_model(model, "auto", gguf=_NoExact(fake))
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.qkv_proj, Int8Linear)  # one Q6_K shard keeps the fused layer at int8
    assert isinstance(layer.mlp.gate_up_proj, Int4Linear)
    assert isinstance(layer.mlp.down_proj, Int8Linear)  # not in the file: int8
    assert isinstance(layer.self_attn.o_proj, Int8Linear)


class _NoExact:
    """A GGUF stand-in that lists types but whose 4-bit types are not block-mappable (forces requantization)."""

    def __init__(self, fake):
        self.tensor_names = fake.tensor_names
        self._fake = fake

    def raw(self, name):
        kind = self._fake.raw(name).type.name
        return SimpleNamespace(type=SimpleNamespace(name="Q3_K" if kind.startswith("Q4") else kind))


def test_unknown_mode_is_a_one_line_error(tiny_model_dir):
    model, _ = load_model(tiny_model_dir("qwen2"))
    with pytest.raises(QcoderError, match="unknown quantization 'int3'"):
        quantize_model(model, "int3")


@pytest.mark.parametrize("variant", ["qwen2", "qwen2-tied", "qwen3_moe"])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantizing_while_loading_matches_quantizing_after(tiny_model_dir, variant, mode, int4_backend):
    if mode == "int8" and int4_backend == "pytorch":
        pytest.skip("int8 layers have one backend")
    from qcoder.model import loader
    from qcoder.model.qwen import QwenForCausalLM

    path = tiny_model_dir(variant)
    model, config = load_model(path)
    quantize_model(model, mode)
    with torch.device("meta"):
        streamed = QwenForCausalLM(config)
    streamed.materialize("cpu")
    load_quantized(streamed, loader._SafetensorsReader(path, loader._weight_files(path)).tensors(), mode)
    assert all(p.numel() < 1000 for p in streamed.parameters())  # only norms and biases keep fp32 storage
    ids = [list(range(3, 30))]
    assert torch.equal(_logits(streamed, config, ids), _logits(model, config, ids))


@pytest.mark.parametrize("arch,qtype", [("qwen2", T.Q4_K), ("qwen3_moe", T.Q4_K), ("qwen2", T.Q8_0)])
def test_gguf_auto_maps_blocks_while_loading(tmp_path, arch, qtype, int4_backend):
    """A GGUF file through load_quantized(gguf_tensors(...), "auto"): Q4_K layers become exact int4, Q8_0 int8."""
    from qcoder.model.gguf import GGUFCheckpoint
    from qcoder.model.qwen import QwenForCausalLM

    from .test_gguf import tiny_hf, write_gguf

    path = tmp_path / "m.gguf"
    write_gguf(path, tiny_hf(arch), qtype)
    ref_model, config = load_model(path, quant="none")
    ckpt = GGUFCheckpoint(path)
    with torch.device("meta"):
        model = QwenForCausalLM(config)
    model.materialize("cpu")
    load_quantized(model, gguf_tensors(ckpt, chunk_rows=64), "auto", gguf=ckpt)
    want = Int4Linear if qtype == T.Q4_K else Int8Linear
    if arch == "qwen2":
        layer = model.model.layers[0]
        assert isinstance(layer.self_attn.qkv_proj, want) and isinstance(layer.mlp.down_proj, want)
        if qtype == T.Q4_K:  # exact: the unpacked weight is the file's, up to bf16 scales
            w = ref_model.model.layers[0].mlp.down_proj.weight
            deq = layer.mlp.down_proj.dequantize()[: w.shape[0], : w.shape[1]]
            _close(deq, w, 0.01)
    else:
        assert isinstance(model.model.layers[0].mlp.experts.gate_up[0], want)
    assert isinstance(model.lm_head, Int8Linear)  # the head stays int8 whatever its source
    ids = [list(range(5, 40))]
    ref, out = _logits(ref_model, config, ids), _logits(model, config, ids)
    assert torch.cosine_similarity(out.flatten(), ref.flatten(), dim=0).item() >= 0.99
    # auto's fallback where the GGUF kernels cannot run is this path
    fallback = cpu_kernels.disabled() if int4_backend == "pytorch" else contextlib.nullcontext()
    if int4_backend == "pytorch" or arch == "qwen3_moe":  # the kernels run dense models straight from the file
        with fallback:
            via_loader, _ = load_model(path, quant="auto")
        assert torch.equal(_logits(via_loader, config, ids), out)
