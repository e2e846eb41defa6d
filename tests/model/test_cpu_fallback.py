"""Where the C kernels cannot run (an aarch64 CPU, QCODER_NATIVE_KERNELS=0), every model still loads and computes,
on PyTorch's kernels. The aarch64 case is forced here by pretending to be such a machine."""

from __future__ import annotations

import pytest
import torch
from gguf import GGMLQuantizationType as T

from qcoder.model import cpu_kernels
from qcoder.model.gguf_linear import GGUFLinear, prefill_kernel
from qcoder.model.loader import load_model
from qcoder.model.quant import Int4Linear, Int8Linear
from qcoder.model.qwen import ForwardBatch, allocate_kv_cache

from .test_gguf import tiny_hf, write_gguf


@pytest.fixture
def aarch64(monkeypatch):
    monkeypatch.delenv("QCODER_NATIVE_KERNELS", raising=False)  # the machine is the reason here
    monkeypatch.setattr(cpu_kernels, "machine", lambda: "aarch64")
    cpu_kernels.kernels.cache_clear()
    yield
    monkeypatch.undo()
    cpu_kernels.kernels.cache_clear()


def _logits(model, config, ids):
    batch = ForwardBatch.for_new_prompts(ids, all_logits=True)
    return model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32))


def test_an_aarch64_cpu_gets_no_c_kernels_and_says_why(aarch64):
    assert cpu_kernels.unavailable() == "the C kernels are x86-64 only (this is aarch64)"
    assert "PyTorch kernels (the C kernels are x86-64 only (this is aarch64))" in cpu_kernels.describe()
    assert prefill_kernel().kernel == ("bf16" if cpu_kernels.has_bf16() else "fp32")


@pytest.mark.parametrize("arch,qtype", [("qwen2", T.Q4_K), ("qwen2", T.Q8_0), ("qwen3_moe", T.Q4_K)])
def test_an_aarch64_cpu_runs_gguf_models_on_pytorch_kernels(tmp_path, aarch64, arch, qtype):
    path = tmp_path / "m.gguf"
    write_gguf(path, tiny_hf(arch), qtype)
    ref, config = load_model(path, quant="none")
    model, _ = load_model(path, quant="auto")
    layers = [m for m in model.modules() if isinstance(m, (GGUFLinear, Int4Linear, Int8Linear))]
    assert layers and not any(isinstance(m, GGUFLinear) for m in layers)
    assert all(not m.native for m in layers if isinstance(m, Int4Linear))
    if qtype == T.Q4_K:
        assert any(isinstance(m, Int4Linear) for m in layers)
    for rows in (1, 40):  # decode and prefill sizes
        ids = [list(range(3, 3 + rows))]
        want, got = _logits(ref, config, ids), _logits(model, config, ids)
        assert torch.cosine_similarity(got.flatten(), want.flatten(), dim=0).item() >= 0.99
