"""GGUF weights computed in their stored format: linear and embedding layers over the file's memory map.

This is how llama.cpp runs a GGUF file, in a small C file of our own (cpu_kernels.c): the activations are
quantized to int8 blocks of 32 and every 32-weight chunk is one integer dot product. Almost nothing is converted at
load time, so a model loads in well under a second, resident memory is about the file's size (only the embedding
rows in use are ever read), and a decode step reads each weight once in its stored 4.5-8.5 bits. The exceptions are
Q5_0 and Q8_0 (most of the default 0.5B model): their blocks are regrouped once, into the same number of bytes, so
that decode reads a group's scales in one load and unpacks Q5_0's fifth bits in a few masks (`_kernel_rows`); the
file's pages are given back after.

Where the kernels cannot be built (see qcoder.model.cpu_kernels), `why_not_native` says why and the loader falls back
to PyTorch's int8/int4 kernels (qcoder.model.quant).

Prefill (many rows at once) has three ways to multiply, and which is fastest depends on the CPU: the same integer dot
products in tiles of eight activation rows ("int8"), or a GEMM on weights dequantized a slab at a time, in fp32 or
in bf16. A bf16 GEMM wins only where the CPU multiplies bf16 in hardware (elsewhere oneDNN emulates it, 2-4x slower
than fp32); between the others the instruction set and the cache sizes decide. So `prefill_kernel()` measures them
once per kernel build, on a small fused layer of typical types, and stores the choice next to the built library.
QCODER_PREFILL_KERNEL=int8|fp32|bf16 overrides it.
"""

from __future__ import annotations

import ctypes
import functools
import json
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qcoder.model import cpu_kernels
from qcoder.model.cpu_kernels import lib as _lib
from qcoder.model.cpu_kernels import unavailable
from qcoder.model.gguf import GGUFCheckpoint, RawTensor, dequantize
from qcoder.model.qwen import Experts, QwenForCausalLM

PREFILL_ROWS = 32  # from this many rows on, a layer runs the prefill kernel
PREFILL_KERNELS = ("int8", "fp32", "bf16")
SLAB_ROWS = 1024  # weight rows per slab: bounds the scratch memory (3 MiB for 1536 columns)
# GGML type ids the kernels read (gguf.GGMLQuantizationType values)
NATIVE_TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}
Q5_0X8, Q8_0X8 = 106, 108  # Q5_0 and Q8_0 regrouped at load time (cpu_kernels.c, qc_regroup)


class _Part(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int32),
        ("_pad", ctypes.c_int32),
        ("data", ctypes.c_void_p),
        ("rows", ctypes.c_int64),
        ("row_bytes", ctypes.c_int64),
    ]


# ---------------------------------------------------------------- layers


def _type_id(raw: RawTensor) -> int:
    if raw.type.name not in NATIVE_TYPES:
        raise ValueError(f"tensor {raw.gguf_name!r}: {raw.type.name} has no GGUF kernel")
    return NATIVE_TYPES[raw.type.name]


def _kernel_rows(raw: RawTensor) -> tuple[int, np.ndarray]:
    """The type id and the rows the matrix kernels read: Q5_0 and Q8_0 regrouped (Q5_0X8, Q8_0X8: a group's scales
    in one load, and Q5_0's 5-bit values unpacked in a few masks; on the Zen 1 they cost more to unpack than to read),
    the other types as stored."""
    rows = np.asarray(raw.data)  # a plain ndarray view of the map: numpy is slow on np.memmap slices
    kind = _type_id(raw)
    regrouped = _lib().qc_regrouped_type(kind)
    if not regrouped:
        return kind, rows
    count, cols = raw.shape
    out = _anonymous(count, _lib().qc_regrouped_row_bytes(regrouped, cols))
    _lib().qc_regroup(kind, rows.ctypes.data, count, cols, out.ctypes.data, torch.get_num_threads())
    _release(raw.data)
    return regrouped, out


def _anonymous(rows: int, row_bytes: int) -> np.ndarray:
    """Memory for regrouped weights, asking for huge pages (fewer page faults at load where the OS grants them; the
    Zen 1 VM does not, so its 0.2 s of regrouping the 0.5B are page faults and copies)."""
    memory = mmap.mmap(-1, rows * row_bytes)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        memory.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(memory, np.uint8).reshape(rows, row_bytes)


def _release(array: np.ndarray) -> None:
    """Take a memory-mapped array's pages out of this process's resident memory once they have been copied (the
    file stays in the page cache; a later read maps them back). Only file pages: anonymous ones would be lost."""
    if not isinstance(array, np.memmap):
        return
    start = -(-array.ctypes.data // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (array.ctypes.data + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if end > start:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_DONTNEED)


class GGUFLinear(nn.Module):
    """y = x W^T (+ bias) with W the row-wise concatenation of `raws` (q|k|v, gate|up: each keeps its own type).
    Inputs of any float dtype; the product is computed in fp32 and returned in the input's dtype."""

    def __init__(self, raws: list[RawTensor], bias: bool = False):
        super().__init__()
        self.in_features = raws[0].shape[-1]
        if any(len(r.shape) != 2 or r.shape[-1] != self.in_features for r in raws):
            raise ValueError("GGUFLinear parts must be 2-D with the same number of columns")
        stored = [_kernel_rows(r) for r in raws]
        self._arrays = [rows for _, rows in stored]  # the memory map (or the regrouped copy) stays alive with us
        self._parts = (_Part * len(raws))(
            *(_Part(kind, 0, a.ctypes.data, r.shape[0], a.shape[-1]) for r, (kind, a) in zip(raws, stored, strict=True))
        )
        self.out_features = sum(r.shape[0] for r in raws)
        self.types = [r.type.name for r in raws]
        self.bias = nn.Parameter(torch.empty(self.out_features), requires_grad=False) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        y = self.matmul(x2, prefill_kernel().kernel if x2.shape[0] >= PREFILL_ROWS else "int8")
        if self.bias is not None:
            y += self.bias
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def matmul(self, x2: torch.Tensor, kernel: str) -> torch.Tensor:
        """x2 [M, in_features] times the weight, fp32 [M, out_features], by one of PREFILL_KERNELS."""
        if kernel == "int8":
            return self._dot(x2)
        return self._gemm(x2, torch.float32 if kernel == "fp32" else torch.bfloat16)

    def _dot(self, x2: torch.Tensor) -> torch.Tensor:
        if x2.dtype != torch.float32 or not x2.is_contiguous():
            x2 = x2.float().contiguous()
        y = torch.empty(x2.shape[0], self.out_features, dtype=torch.float32)
        _lib().qc_matmul(
            self._parts,
            len(self._parts),
            self.in_features,
            x2.data_ptr(),
            x2.shape[0],
            y.data_ptr(),
            self.out_features,
            torch.get_num_threads(),
        )
        return y

    def _gemm(self, x2: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        xb = x2.to(dtype)
        y = torch.empty(x2.shape[0], self.out_features, dtype=torch.float32)
        slab = torch.empty(min(SLAB_ROWS, self.out_features), self.in_features, dtype=dtype)
        for row0 in range(0, self.out_features, SLAB_ROWS):
            w = slab[: min(SLAB_ROWS, self.out_features - row0)]
            self._dequantize_into(w, row0)
            y[:, row0 : row0 + len(w)] = xb @ w.t()
        return y

    def _dequantize_into(self, out: torch.Tensor, row0: int) -> None:
        _lib().qc_dequantize(
            self._parts,
            len(self._parts),
            self.in_features,
            row0,
            out.shape[0],
            out.data_ptr(),
            int(out.dtype == torch.bfloat16),
            torch.get_num_threads(),
        )

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The whole weight [out_features, in_features] in fp32 or bf16 (for tests and inspection)."""
        out = torch.empty(self.out_features, self.in_features, dtype=dtype)
        self._dequantize_into(out, 0)
        return out

    def extra_repr(self) -> str:
        types = "|".join(self.types)
        return f"in_features={self.in_features}, out_features={self.out_features}, types={types}"


class GGUFEmbedding(nn.Module):
    """Rows of a quantized embedding, dequantized as they are looked up."""

    def __init__(self, raw: RawTensor, dtype: torch.dtype):
        super().__init__()
        self._array = np.asarray(raw.data)
        self._type = _type_id(raw)
        self.num_embeddings, self.embedding_dim = raw.shape
        self.dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1).to(torch.int64).contiguous()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise IndexError(f"token id out of range for an embedding of {self.num_embeddings} rows")
        out = torch.empty(flat.numel(), self.embedding_dim, dtype=torch.float32)
        _lib().qc_get_rows(
            self._type,
            self._array.ctypes.data,
            self._array.shape[-1],
            self.embedding_dim,
            flat.data_ptr(),
            flat.numel(),
            out.data_ptr(),
            torch.get_num_threads(),
        )
        return out.to(self.dtype).reshape(*ids.shape, self.embedding_dim)


# ---------------------------------------------------------------- choosing the prefill kernel


@dataclass(frozen=True)
class PrefillChoice:
    kernel: str  # one of PREFILL_KERNELS
    how: str  # why: the measured times, the override, or the rule

    def describe(self) -> str:
        names = {"int8": "int8 dot-product tiles", "fp32": "fp32 GEMM on dequantized slabs", "bf16": "bf16 GEMM"}
        return f"{names[self.kernel]} ({self.how})"


def prefill_kernel() -> PrefillChoice:
    """The prefill kernel for this machine: QCODER_PREFILL_KERNEL, else the one measured fastest for the current
    kernel build (measured at its first use, then read back from the cache). Without the C kernels, PyTorch's
    int8/int4 layers (qcoder.model.quant) dequantize to bf16 where the CPU has it in hardware, else to fp32."""
    forced = os.environ.get("QCODER_PREFILL_KERNEL")
    if forced:
        if forced not in PREFILL_KERNELS:
            raise ValueError(f"QCODER_PREFILL_KERNEL={forced!r}: choose {', '.join(PREFILL_KERNELS)}")
        return PrefillChoice(forced, "set by QCODER_PREFILL_KERNEL")
    if unavailable():
        return PrefillChoice("bf16" if cpu_kernels.has_bf16() else "fp32", "PyTorch layers: by the CPU's bf16 support")
    # the GEMMs' own instruction set limits (set to mimic an older CPU) change the measurement too
    limits = "-".join(
        os.environ.get(v, "") for v in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
    )
    return _measured_choice(str(_lib().path), limits.lower())


@functools.cache
def _measured_choice(library: str, limits: str) -> PrefillChoice:
    """The fastest prefill kernel of the kernel build at `library` under the GEMMs' instruction set `limits`,
    measured once and recorded beside the library."""
    record = Path(f"{library}.prefill{limits}.json")
    try:
        times = json.loads(record.read_text())
    except (OSError, ValueError):
        times = measure_prefill_kernels()
        tmp = record.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(times))
            os.replace(tmp, record)
        except OSError:  # a read-only cache: measure again next time
            tmp.unlink(missing_ok=True)
    best = min(times, key=times.get)
    ratios = ", ".join(f"{k} {times[k] / times[best]:.2f}" for k in sorted(times, key=times.get))
    return PrefillChoice(best, f"measured at build, relative time: {ratios}")


def measure_prefill_kernels(rounds: int = 3) -> dict[str, float]:
    """Seconds per call of each candidate kernel on a fused Q4_K | Q5_0 | Q6_K | Q8_0 layer (Q4_K_M files' types) and
    512 activation rows (a prompt), best of `rounds` interleaved rounds. bf16 competes only where the CPU has it in
    hardware (elsewhere it measured 1.5x fp32's time with AVX-512 and 3-4x with AVX2)."""
    rng = np.random.default_rng(0)
    layer = GGUFLinear([_random_weight(kind, 256, 1024, rng) for kind in _BLOCKS])
    x = torch.from_numpy(rng.standard_normal((512, 1024), dtype=np.float32))
    kernels = [k for k in PREFILL_KERNELS if k != "bf16" or cpu_kernels.has_bf16()]
    best = dict.fromkeys(kernels, float("inf"))
    for kernel in kernels:  # warm-up: first-touch of scratch memory, oneDNN's first-call set-up
        layer.matmul(x, kernel)
    for _ in range(rounds):
        for kernel in kernels:
            t0 = time.perf_counter()
            layer.matmul(x, kernel)
            best[kernel] = min(best[kernel], time.perf_counter() - t0)
    return best


# (bytes per block, values per block, byte offsets of the fp16 scales) of the types measure_prefill_kernels uses
_BLOCKS = {"Q4_K": (144, 256, (0, 2)), "Q5_0": (22, 32, (0,)), "Q6_K": (210, 256, (208,)), "Q8_0": (34, 32, (0,))}


def _random_weight(kind: str, rows: int, cols: int, rng) -> RawTensor:
    """Random blocks of `kind` (every bit pattern of the quantized values is valid) with small fp16 scales."""
    from gguf import GGMLQuantizationType

    size, per, scales = _BLOCKS[kind]
    data = rng.integers(0, 256, (rows, cols // per, size), dtype=np.uint8)
    for at in scales:
        data[..., at : at + 2] = rng.uniform(1e-3, 1e-2, (rows, cols // per, 1)).astype(np.float16).view(np.uint8)
    qtype = GGMLQuantizationType[kind]
    return RawTensor(f"random.{kind}", f"random.{kind}", qtype, (rows, cols), data.reshape(rows, -1))


# ---------------------------------------------------------------- a decode step's layers in one call


class _Layer(ctypes.Structure):  # qc_layer in cpu_kernels.c
    _fields_ = [
        *((name, ctypes.c_void_p) for name in ("qkv", "o", "gate_up", "down")),
        *((name, ctypes.c_int32) for name in ("qkv_parts", "o_parts", "gate_up_parts", "down_parts")),
        *((name, ctypes.c_void_p) for name in ("qkv_bias", "o_bias", "norm1", "norm2", "k_cache", "v_cache")),
    ]


class FusedDecode:
    """All decoder layers of a decode step (one new token per sequence) in one C call: the same kernels, in the same
    order, as the modules (so the same numbers), without ~150 us of Python and dispatch per layer.
    For fp32 dense models whose linear layers are all GGUFLinear and without q/k norms (Qwen2); `supports` says."""

    def __init__(self, model: QwenForCausalLM):
        config = model.config
        self.model = model
        self.dims = (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim)
        self.inter, self.eps = config.intermediate_size, config.rms_norm_eps
        self._layers = None
        self._caches: tuple = ()

    @staticmethod
    def supports(model: QwenForCausalLM) -> bool:
        c = model.config
        if c.num_experts or c.qk_norm or c.head_dim % 8 or model.model.norm.weight.dtype != torch.float32:
            return False
        return all(
            isinstance(m, GGUFLinear)
            for layer in model.model.layers
            for m in (layer.self_attn.qkv_proj, layer.self_attn.o_proj, layer.mlp.gate_up_proj, layer.mlp.down_proj)
        )

    def _build(self, kv_caches: list[torch.Tensor]) -> None:
        def parts(m: GGUFLinear):
            return ctypes.cast(m._parts, ctypes.c_void_p), len(m._parts)

        def ptr(t: torch.Tensor | None):
            return None if t is None else t.data_ptr()

        layers = []
        for layer, cache in zip(self.model.model.layers, kv_caches, strict=True):
            attn, mlp = layer.self_attn, layer.mlp
            (qkv, nq), (o, no), (gu, ng), (down, nd) = map(
                parts, (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)
            )
            layers.append(
                _Layer(qkv, o, gu, down, nq, no, ng, nd, ptr(attn.qkv_proj.bias), ptr(attn.o_proj.bias),
                       ptr(layer.input_layernorm.weight), ptr(layer.post_attention_layernorm.weight),
                       cache[0].data_ptr(), cache[1].data_ptr())
            )  # fmt: skip
        self._layers = (_Layer * len(layers))(*layers)
        self._caches = tuple(c.data_ptr() for c in kv_caches)

    def __call__(self, x: torch.Tensor, batch, plan, kv_caches: list[torch.Tensor]) -> torch.Tensor:
        if self._caches != tuple(c.data_ptr() for c in kv_caches):
            self._build(kv_caches)
        x = x.contiguous().clone()
        slots, lens = plan.context_slots.to(torch.int64).contiguous(), plan.context_lens.to(torch.int64).contiguous()
        slot_mapping = batch.slot_mapping.to(torch.int64).contiguous()
        cos, sin = plan.cos.contiguous(), plan.sin.contiguous()
        hidden, heads, kv_heads, head_dim = self.dims
        _lib().qc_decode_layers(
            self._layers, len(self._layers), x.data_ptr(), x.shape[0], hidden, heads, kv_heads, head_dim,
            self.inter, self.eps, head_dim**-0.5, cos.data_ptr(), sin.data_ptr(), slot_mapping.data_ptr(),
            slots.data_ptr(), lens.data_ptr(), slots.shape[1], int(kv_caches[0].dtype == torch.float16),
            torch.get_num_threads(),
        )  # fmt: skip
        return x


# ---------------------------------------------------------------- the model


def _sources(name: str, tied: bool) -> list[str]:
    """The checkpoint tensors (HF names) behind one of our linear modules."""
    from qcoder.model.quant import _sources as fused_sources

    if name == "lm_head" and tied:
        return ["model.embed_tokens.weight"]
    return fused_sources(name)


def why_not_native(checkpoint: GGUFCheckpoint) -> str | None:
    """None when every linear weight of the checkpoint can run on the GGUF kernels, else the reason."""
    reason = unavailable()
    if reason:
        return reason
    config = checkpoint.config
    if config.num_experts:
        return "MoE experts run on the int8/int4 path"
    for name in checkpoint.tensor_names:
        raw = checkpoint.raw(name)
        if (
            name.endswith(".weight")
            and len(raw.shape) == 2
            and "norm" not in name
            and not name.endswith("mlp.gate.weight")
        ):
            if raw.type.name not in NATIVE_TYPES and name != "model.embed_tokens.weight":
                return f"tensor {raw.gguf_name!r} is {raw.type.name}, which the GGUF kernels do not read"
            if raw.shape[-1] % 32:
                return f"tensor {raw.gguf_name!r} has {raw.shape[-1]} columns (not a multiple of 32)"
    if config.tie_word_embeddings and checkpoint.raw("model.embed_tokens.weight").type.name not in NATIVE_TYPES:
        return "the tied embedding's type has no GGUF kernel"
    return None


def load_native(checkpoint: GGUFCheckpoint, dtype: torch.dtype = torch.float32) -> QwenForCausalLM:
    """A model whose linear layers (and embedding, when quantized) compute from the checkpoint's memory map; the
    remaining tensors (norms, biases, router) are read as usual. Check `why_not_native` first."""
    config = checkpoint.config
    tied = config.tie_word_embeddings
    with torch.device("meta"):
        model = QwenForCausalLM(config, dtype)
    consumed: set[str] = set()
    for name, module in list(model.named_modules()):
        if isinstance(module, Experts):
            raise ValueError("load_native does not handle MoE experts")
        if not isinstance(module, nn.Linear) or name.endswith("mlp.gate"):
            continue
        sources = _sources(name, tied)
        with torch.device("meta"):
            new = GGUFLinear([checkpoint.raw(s) for s in sources], bias=module.bias is not None)
        consumed.update(sources)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, new)
    embedding = checkpoint.raw("model.embed_tokens.weight")
    if embedding.type.name in NATIVE_TYPES:
        model.model.embed_tokens = GGUFEmbedding(embedding, dtype)
        consumed.add("model.embed_tokens.weight")
    model.materialize("cpu")  # norms and biases
    model.load_weights(
        (name, dequantize(checkpoint.raw(name)).to(dtype)) for name in checkpoint.tensor_names if name not in consumed
    )
    model.kv_cache_dtype = torch.float16  # as llama.cpp keeps it: half the memory, and the kernels read it
    prefill_kernel()  # measured at the first load after a kernel build, not within the first prompt's time
    if FusedDecode.supports(model):
        model.fused_decode = FusedDecode(model)
    return model.requires_grad_(False).eval()
