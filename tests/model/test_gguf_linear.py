"""The GGUF kernels (cpu_kernels.c through gguf_linear.py) against gguf-py's dequantization.

The kernels quantize activations to int8 blocks of 32 (as llama.cpp does), so the exact reference is
`q8(x) @ dequantize(W).T` in float64: any error in a block layout, scale or offset shows up far above the float32
rounding tolerance used here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf import quants

from qcoder.model import cpu_kernels, gguf_linear
from qcoder.model.gguf import GGUFCheckpoint, RawTensor
from qcoder.model.gguf_linear import NATIVE_TYPES, GGUFEmbedding, GGUFLinear, why_not_native
from qcoder.model.loader import load_model
from qcoder.model.qwen import ForwardBatch, allocate_kv_cache
from tests.conftest import QWEN25_TOKENIZER

from .test_gguf import random_blocks, tiny_hf, write_gguf

pytestmark = pytest.mark.skipif(cpu_kernels.unavailable() is not None, reason=str(cpu_kernels.unavailable()))

K_QUANTS = ("Q4_K", "Q5_K", "Q6_K")


def raw_tensor(kind: str, rows: int, cols: int, rng) -> RawTensor:
    qtype = T[kind]
    if kind in K_QUANTS:
        data = random_blocks((rows, cols), qtype, rng)
    else:
        data = quants.quantize(rng.standard_normal((rows, cols)).astype(np.float32) * 0.1, qtype)
    return RawTensor(f"w.{kind}", f"w.{kind}", qtype, (rows, cols), data)


def dequantized(raw: RawTensor) -> np.ndarray:
    return quants.dequantize(raw.data, raw.type).reshape(raw.shape).astype(np.float64)


def int8_blocks(x: np.ndarray) -> np.ndarray:
    """x as the kernels see it: blocks of 32 scaled to int8 (round half to even), back in float64."""
    blocks = x.reshape(x.shape[0], -1, 32).astype(np.float32)
    scale = np.abs(blocks).max(-1, keepdims=True) / np.float32(127)
    inverse = np.divide(np.float32(1), scale, out=np.zeros_like(scale), where=scale > 0)
    return (np.rint(blocks * inverse) * scale).reshape(x.shape).astype(np.float64)


def assert_matches(y: torch.Tensor, ref: np.ndarray) -> None:
    err = np.abs(y.double().numpy() - ref).max() / np.abs(ref).max()
    assert err < 1e-5, f"relative error {err:.2e}"


@pytest.mark.parametrize("kind", NATIVE_TYPES)
@pytest.mark.parametrize("rows,cols,batch", [(7, 256, 1), (33, 512, 3), (64, 768, 8), (21, 256, 13)])
def test_linear_matches_the_dequantized_weight(kind, rows, cols, batch):
    rng = np.random.default_rng(rows * cols + batch)
    raw = raw_tensor(kind, rows, cols, rng)
    x = rng.standard_normal((batch, cols)).astype(np.float32)
    y = GGUFLinear([raw])(torch.from_numpy(x))
    assert y.shape == (batch, rows) and y.dtype == torch.float32
    assert_matches(y, int8_blocks(x) @ dequantized(raw).T)


@pytest.mark.parametrize("kernel", gguf_linear.PREFILL_KERNELS)
@pytest.mark.parametrize("kind", NATIVE_TYPES)
def test_every_prefill_kernel_computes_the_product(kind, kernel):
    rng = np.random.default_rng(4)
    raw = raw_tensor(kind, 2 * gguf_linear.SLAB_ROWS + 3, 256, rng)  # three slabs, the last one short
    layer = GGUFLinear([raw])
    weight = dequantized(raw)
    assert np.allclose(layer.dequantize().numpy(), weight, rtol=1e-6, atol=1e-6 * np.abs(weight).max())
    x = rng.standard_normal((gguf_linear.PREFILL_ROWS + 5, 256)).astype(np.float32)
    y = layer.matmul(torch.from_numpy(x), kernel)
    if kernel == "int8":  # the decode kernel's numbers, in tiles
        assert_matches(y, int8_blocks(x) @ weight.T)
    else:
        ref = x.astype(np.float64) @ weight.T
        err = np.abs(y.double().numpy() - ref).max() / np.abs(ref).max()
        assert err < (1e-5 if kernel == "fp32" else 2e-2)  # bf16: rounded inputs


def test_prefill_runs_the_kernel_measured_fastest_unless_overridden(monkeypatch):
    monkeypatch.delenv("QCODER_PREFILL_KERNEL", raising=False)
    choice = gguf_linear.prefill_kernel()
    assert choice.kernel in gguf_linear.PREFILL_KERNELS and choice.how.startswith("measured at build")
    assert choice == gguf_linear.prefill_kernel()  # recorded once per kernel build, then read back
    rng = np.random.default_rng(6)
    layer = GGUFLinear([raw_tensor("Q8_0", 40, 256, rng)])
    x = torch.from_numpy(rng.standard_normal((gguf_linear.PREFILL_ROWS, 256)).astype(np.float32))
    for kernel in gguf_linear.PREFILL_KERNELS:
        monkeypatch.setenv("QCODER_PREFILL_KERNEL", kernel)
        assert gguf_linear.prefill_kernel().kernel == kernel
        assert torch.equal(layer(x), layer.matmul(x, kernel))
    assert torch.equal(layer(x[:3]), layer.matmul(x[:3], "int8"))  # decode rows: always the dot products
    monkeypatch.setenv("QCODER_PREFILL_KERNEL", "fp64")
    with pytest.raises(ValueError, match="QCODER_PREFILL_KERNEL='fp64'"):
        gguf_linear.prefill_kernel()


def test_fused_parts_of_mixed_types_with_bias_and_bf16_input():
    rng = np.random.default_rng(1)
    parts = [raw_tensor("Q5_0", 40, 256, rng), raw_tensor("Q8_0", 8, 256, rng), raw_tensor("Q6_K", 9, 256, rng)]
    layer = GGUFLinear(parts, bias=True)
    layer.bias.copy_(torch.arange(57, dtype=torch.float32))
    x = rng.standard_normal((2, 3, 256)).astype(np.float32)
    y = layer(torch.from_numpy(x))
    assert y.shape == (2, 3, 57)
    weight = np.concatenate([dequantized(p) for p in parts])
    assert_matches(y.reshape(6, 57), int8_blocks(x.reshape(6, 256)) @ weight.T + np.arange(57))
    assert layer(torch.from_numpy(x).bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("kind", NATIVE_TYPES)
def test_rows_of_a_batch_do_not_depend_on_each_other(kind):
    """Up to eight rows share each decoded weight chunk (register tiles of several weight rows by 1-8 activation rows),
    more go in groups of eight: either way a row's result is bit for bit the same whatever the other rows are, so
    a speculative verification of up to 7 drafts computes what decode would, and so does every batch size."""
    rng = np.random.default_rng(2)
    raw = raw_tensor(kind, 50, 512, rng)  # 50 rows: tiles of every width leave a remainder
    layer = GGUFLinear([raw])
    x = torch.from_numpy(rng.standard_normal((12, 512)).astype(np.float32))
    alone = torch.cat([layer(x[i : i + 1]) for i in range(12)])
    assert_matches(alone, int8_blocks(x.numpy()) @ dequantized(raw).T)
    for rows in range(2, 9):
        assert torch.equal(layer(x[12 - rows :]), alone[12 - rows :]), f"{rows} rows"
    together = layer(x)
    assert torch.equal(layer(x[2:12]), together[2:12])


@pytest.mark.parametrize("kind", NATIVE_TYPES)
def test_embedding_rows_are_the_dequantized_rows(kind):
    rng = np.random.default_rng(3)
    raw = raw_tensor(kind, 40, 256, rng)
    ids = torch.tensor([[0, 39, 7], [7, 1, 2]])
    out = GGUFEmbedding(raw, torch.float32)(ids)
    assert out.shape == (2, 3, 256)
    assert np.allclose(out.numpy(), dequantized(raw)[ids.numpy()], rtol=1e-6, atol=1e-6 * np.abs(out.numpy()).max())
    with pytest.raises(IndexError, match="out of range"):
        GGUFEmbedding(raw, torch.float32)(torch.tensor([40]))


def _logits(model, config, ids: list[int]) -> torch.Tensor:
    batch = ForwardBatch.for_new_prompts([ids], all_logits=True)
    return model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))


@pytest.mark.parametrize(
    "arch,qtype,overrides",
    [("qwen2", T.Q4_K, {}), ("qwen2", T.Q5_0, {"tie_word_embeddings": True}), ("qwen3", T.Q6_K, {})],
)
def test_auto_runs_a_gguf_model_on_the_kernels(tmp_path, arch, qtype, overrides):
    path = tmp_path / "m.gguf"
    write_gguf(path, tiny_hf(arch, **overrides), qtype)
    reference, config = load_model(path)  # fp32, dequantized by gguf-py
    model, _ = load_model(path, quant="auto")
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.qkv_proj, GGUFLinear) and isinstance(layer.mlp.gate_up_proj, GGUFLinear)
    assert isinstance(model.lm_head, GGUFLinear) and isinstance(model.model.embed_tokens, GGUFEmbedding)
    assert all(p.numel() < 1000 for p in model.parameters())  # only norms and biases are held in memory
    ids = list(range(5, 60))
    ref, out = _logits(reference, config, ids), _logits(model, config, ids)
    # only the activations' int8 rounding separates the two (these random models amplify it)
    assert torch.cosine_similarity(out.flatten(), ref.flatten(), dim=0).item() > 0.99
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean().item() >= 0.9


def test_what_the_kernels_cannot_run_falls_back_to_int8_int4(tmp_path):
    from qcoder.model.quant import Int8Linear, QuantExperts

    moe = tmp_path / "moe.gguf"
    write_gguf(moe, tiny_hf("qwen3_moe"), T.Q8_0)
    assert "MoE" in why_not_native(GGUFCheckpoint(moe))
    model, _ = load_model(moe, quant="auto")
    assert isinstance(model.model.layers[0].mlp.experts, QuantExperts)

    f16 = tmp_path / "f16.gguf"
    write_gguf(f16, tiny_hf("qwen2"), T.F16)
    assert "F16" in why_not_native(GGUFCheckpoint(f16))
    assert isinstance(load_model(f16, quant="auto")[0].lm_head, Int8Linear)

    q8 = tmp_path / "q8.gguf"
    write_gguf(q8, tiny_hf("qwen2"), T.Q8_0)
    with cpu_kernels.disabled():
        assert why_not_native(GGUFCheckpoint(q8)) == "disabled by QCODER_NATIVE_KERNELS=0"
        assert isinstance(load_model(q8, quant="auto")[0].lm_head, Int8Linear)
    assert isinstance(load_model(q8, quant="auto")[0].lm_head, GGUFLinear)


@pytest.mark.parametrize("qtype,cache_dtype", [(T.Q4_K, torch.float16), (T.Q5_0, torch.float32)])
def test_fused_decode_gives_the_modules_numbers(tmp_path, qtype, cache_dtype):
    """A decode step's layers as one C call (FusedDecode) equal the module-by-module forward bit for bit, for a
    batch of sequences of different lengths, and write the same KV cache."""
    path = tmp_path / "m.gguf"
    write_gguf(path, tiny_hf("qwen2"), qtype)
    model, config = load_model(path, quant="auto")
    assert model.fused_decode is not None
    prompts = [list(range(5, 30)), list(range(40, 47)), list(range(60, 99))]
    batch = ForwardBatch.for_new_prompts(prompts, reserve=8)
    caches = allocate_kv_cache(config, batch.num_slots, cache_dtype)
    model(batch, caches)
    step = batch.decode_step([7, 8, 9])
    for _ in range(3):
        modules_caches = [c.clone() for c in caches]
        fused = model(step, caches)
        fused_decode, model.fused_decode = model.fused_decode, None
        try:
            plain = model(step, modules_caches)
        finally:
            model.fused_decode = fused_decode
        assert torch.equal(fused, plain)
        assert all(torch.equal(a, b) for a, b in zip(caches, modules_caches, strict=True))
        step = step.decode_step(fused.argmax(-1).tolist())


def test_engine_generates_the_same_with_and_without_fused_decode(tmp_path):
    """Continuous batching through the engine (prefills and decodes of different lengths interleaved): the fused
    decode path changes nothing in what is generated."""

    from qcoder.engine.llm import LLM, LLMEngine
    from qcoder.engine.sampling import SamplingParams
    from qcoder.engine.tokenizer import Tokenizer

    tokenizer_dir = QWEN25_TOKENIZER
    if not tokenizer_dir.is_dir():
        pytest.skip(f"{tokenizer_dir} not found")
    path = tmp_path / "m.gguf"
    write_gguf(path, tiny_hf("qwen2"), T.Q4_K)
    prompts = [list(range(5, 5 + n)) for n in (3, 40, 17, 9)]
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    outputs = []
    for fused in (True, False):
        model, config = load_model(path, quant="auto")
        if not fused:
            model.fused_decode = None
        engine = LLMEngine.from_parts(model, config, Tokenizer.from_path(tokenizer_dir), kv_cache_tokens=512,
                                      max_num_seqs=3, max_num_batched_tokens=32)  # fmt: skip
        assert engine.kv_caches[0].dtype == torch.float16  # GGUF models keep their KV cache in fp16, as llama.cpp
        outputs.append([out.token_ids for out in LLM.from_engine(engine).generate(prompts, params)])
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("cols", [32, 96, 256, 800])  # 1, 3, 8 and 25 blocks: whole groups of eight and each tail
@pytest.mark.parametrize("kind,regrouped", [("Q5_0", gguf_linear.Q5_0X8), ("Q8_0", gguf_linear.Q8_0X8)])
def test_regrouped_types_compute_what_their_blocks_do(kind, regrouped, cols):
    """Q5_0 and Q8_0 run regrouped (a group's scales in one load, Q5_0's values in fewer vector ops): bit for bit the
    products of the file's own blocks, the same dequantized rows, and the source rows left as they were."""
    rng = np.random.default_rng(cols)
    raw = raw_tensor(kind, 11, cols, rng)
    source = raw.data.copy()
    layer = GGUFLinear([raw])
    assert layer._parts[0].type == regrouped
    assert np.array_equal(raw.data, source)  # not a memory map: nothing given back
    weight = dequantized(raw)
    assert np.allclose(layer.dequantize().numpy(), weight, rtol=1e-6, atol=1e-6 * np.abs(weight).max())
    as_stored = GGUFLinear([raw])
    as_stored._arrays = [source]
    as_stored._parts[0].type, as_stored._parts[0].data = NATIVE_TYPES[kind], source.ctypes.data
    as_stored._parts[0].row_bytes = source.shape[-1]
    for rows in (1, 3, 8, gguf_linear.PREFILL_ROWS + 1):
        x = torch.from_numpy(rng.standard_normal((rows, cols)).astype(np.float32))
        y = layer.matmul(x, "int8")
        assert_matches(y, int8_blocks(x.numpy()) @ weight.T)
        assert torch.equal(y, as_stored.matmul(x, "int8")), f"{rows} rows"


def test_regrouping_a_mapped_file_gives_back_its_pages_and_the_file_still_reads(tmp_path):
    rng = np.random.default_rng(7)
    raw = raw_tensor("Q5_0", 600, 896, rng)  # 370 KB: whole pages inside
    path = tmp_path / "q5_0.bin"
    raw.data.tofile(path)
    mapped = np.memmap(path, mode="r", shape=raw.data.shape)
    layer = GGUFLinear([RawTensor(raw.name, raw.gguf_name, raw.type, raw.shape, mapped)])
    assert _resident_kib(path) <= 8  # read once to regroup, then given back (a page at each end may stay)
    assert np.array_equal(mapped, raw.data)  # read back from the file
    x = rng.standard_normal((2, 896)).astype(np.float32)
    assert_matches(layer(torch.from_numpy(x)), int8_blocks(x) @ dequantized(raw).T)


def _resident_kib(path) -> int:
    """This process's resident memory in the mappings of `path` (Linux /proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split(" ", 1)[0]:  # a mapping's header line: "start-end perms offset dev inode path"
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total
