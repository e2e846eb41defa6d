"""Weight-only int8 / int4 quantization for CPU inference: the Linear layers keep their weights quantized in memory.

- int8: per-output-channel symmetric int8 + bf16 scale, `aten._weight_int8pack_mm` (a plain [N, K] int8 weight).
- int4: groups of 32 input features, asymmetric (w = q * scale + offset, q in 0..15). Group 32 is GGUF's block
  size, so Q4_0 / Q4_1 / Q4_K weights map onto it exactly (scales rounded to fp16, to bf16 on PyTorch's kernel).
  With the C kernels the groups are stored as GGUF Q4_1 blocks and computed like a GGUF file's layers
  (gguf_linear.py); without them, by `aten._weight_int4pack_mm_for_cpu`, whose packed layout we never read (it
  differs between AVX2 and AVX-512).

PyTorch's kernels are fast only with bf16 activations (with fp32 ones they are 5-20x slower than fp32 F.linear), so
such a layer rounds its input to bf16 and returns the model's dtype; the residual stream stays as it was.
For many rows (prefill) a GEMM on the dequantized weight beats the int8 kernel (2x at 512 rows), so from
PREFILL_ROWS rows on an int8 layer dequantizes its weight for the call: to bf16 where the CPU multiplies bf16 in
hardware, else to fp32 (an emulated bf16 GEMM is 2-4x slower than fp32). PyTorch's int4 unpacking costs more than
it saves, so that path always uses its kernel.

Embeddings are int8 (rows gathered, then scaled); a tied LM head shares the embedding's int8 weight.

Decode is bound by reading the weights (the two kernels take 85-93% of a decode step), so torch.compile of the
step measured no gain (33.7 vs 34.5 ms/token, 0.5B, 2 threads) and is not used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType
from torch import nn

from qcoder.errors import QcoderError
from qcoder.model import cpu_kernels
from qcoder.model.qwen import Experts, run_grouped_experts
from qcoder.threads import release_freed_memory

MODES = ("none", "int8", "int4", "auto")
GROUP_SIZE = 32
PREFILL_ROWS = 32  # from this many rows on, an int8 layer dequantizes its weight for a GEMM
_ACT = torch.bfloat16


# ---------------------------------------------------------------- int8


def int8_quantize(weight: torch.Tensor, chunk_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (int8 [N, K], fp32 scales [N]) with weight ~= q * scale[:, None]. Works through the
    rows in blocks so that a 151936-row embedding needs no full-size fp32 temporaries."""
    q = torch.empty(weight.shape, dtype=torch.int8)
    scale = torch.empty(weight.shape[0], dtype=torch.float32)
    for i in range(0, weight.shape[0], chunk_rows):
        w = weight[i : i + chunk_rows].float()
        s = w.abs().amax(dim=1).clamp(min=1e-12) / 127
        q[i : i + chunk_rows] = torch.round(w / s[:, None]).clamp(-127, 127)
        scale[i : i + chunk_rows] = s
    return q, scale


class Int8Linear(nn.Module):
    """The kernel reads out of bounds unless in features are a multiple of 32 (torch 2.13: wrong results, even
    crashes), so other widths are zero-padded (the weight once, the input per call)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        q, scale = int8_quantize(weight)
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight", F.pad(q, (0, -self.in_features % 32)))
        self.register_buffer("scales", scale.to(_ACT))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def shared(cls, weight: torch.Tensor, scales: torch.Tensor) -> Int8Linear:
        """A layer over an existing int8 weight (a tied LM head reading the embedding's)."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.out_features, layer.in_features = weight.shape  # an Int8Embedding's weight is never padded
        if layer.in_features % 32:
            weight = F.pad(weight, (0, -layer.in_features % 32))
        layer.register_buffer("weight", weight)
        layer.register_buffer("scales", scales)
        layer.bias = None
        return layer

    def dequantize(self, dtype: torch.dtype = _ACT) -> torch.Tensor:
        return self.weight.to(dtype) * self.scales.to(dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if self.weight.shape[1] != self.in_features:
            x2 = F.pad(x2, (0, self.weight.shape[1] - self.in_features))
        if x2.shape[0] >= PREFILL_ROWS:
            dtype = _ACT if cpu_kernels.has_bf16() else torch.float32
            y = F.linear(x2.to(dtype), self.dequantize(dtype))
        else:
            y = torch.ops.aten._weight_int8pack_mm(x2.to(_ACT), self.weight, self.scales)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Embedding(nn.Module):
    def __init__(self, weight: torch.Tensor, dtype: torch.dtype):
        super().__init__()
        q, scale = int8_quantize(weight)
        self.register_buffer("weight", q)
        self.register_buffer("scales", scale.to(_ACT))
        self.dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return (self.weight[ids].to(torch.float32) * self.scales[ids, None].float()).to(self.dtype)


# ---------------------------------------------------------------- int4


def int4_groups(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric min/max int4 per group: (q uint8 [N, K] in 0..15, scale [N, K/g], offset [N, K/g]) with
    w ~= q * scale + offset. K must be a multiple of group_size."""
    n, k = weight.shape
    w = weight.float().reshape(n, k // group_size, group_size)
    lo, hi = w.amin(-1), w.amax(-1)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    q = torch.round((w - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    return q.reshape(n, k), scale, lo


def _pad_to(t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    return F.pad(t, (0, cols - t.shape[1], 0, rows - t.shape[0]))


def q4_1_blocks(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """int4 groups (q [N, K] in 0..15, scale and offset [N, K/32]) as GGUF Q4_1 blocks, uint8 [N, K/32 * 20]: per
    group an fp16 scale, an fp16 offset, then 16 bytes holding values i (low nibble) and i + 16 (high nibble)."""
    n, k = q.shape
    q = q.to(torch.uint8).view(n, k // 32, 32)
    nibbles = q[..., :16] | (q[..., 16:] << 4)
    halves = torch.stack([scale, offset], -1).to(torch.float16).view(torch.uint8)  # [N, K/32, 4] bytes
    return torch.cat([halves, nibbles], -1).reshape(n, k // 32 * 20).contiguous()


class Int4Linear(nn.Module):
    """Built from (q, scale, offset) groups of 32 input features (in features are zero-padded to a multiple of 32:
    the weight once, the input per call).

    With the C kernels the weight is stored as GGUF Q4_1 blocks (a layout of our own choosing, and documented) and
    runs through gguf_linear's kernels: int8 dot products for decode, the machine's prefill kernel for many rows.
    Without them (QCODER_NATIVE_KERNELS=0, non-x86 CPUs) it runs on PyTorch's int4 kernel, whose packed layout is
    undocumented and differs between dispatch levels (AVX2, AVX-512): nothing here reads it, `dequantize()` asks
    the kernel itself."""

    def __init__(self, q, scale, offset, bias=None, group_size: int = GROUP_SIZE):
        super().__init__()
        if group_size != GROUP_SIZE:
            raise ValueError(f"int4 groups are {GROUP_SIZE} wide")
        n, k = q.shape
        self.out_features, self.in_features, self.group_size = n, k, group_size
        self.native = cpu_kernels.unavailable() is None
        k_pad = -(-k // group_size) * group_size
        groups = k_pad // group_size
        q, scale, offset = _pad_to(q, n, k_pad), _pad_to(scale.float(), n, groups), _pad_to(offset.float(), n, groups)
        if self.native:
            from qcoder.model.gguf import RawTensor
            from qcoder.model.gguf_linear import GGUFLinear

            self.register_buffer("blocks", q4_1_blocks(q, scale, offset))
            raw = RawTensor("int4", "int4", GGMLQuantizationType.Q4_1, (n, k_pad), self.blocks.numpy())
            self._gguf = [GGUFLinear([raw])]  # in a list: not a submodule, the buffer above is the state
        else:
            self._pack_for_torch(q, scale, offset)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def _pack_for_torch(self, q, scale, offset) -> None:
        """PyTorch's kernel wants out features padded to its 64-row blocks and computes (q - 8) * scale + zero."""
        n, k_pad = q.shape
        n_pad, groups = -(-n // 64) * 64, k_pad // self.group_size
        q = _pad_to(q.to(torch.int32), n_pad, k_pad).view(n_pad, groups, self.group_size)
        scale, offset = _pad_to(scale, n_pad, groups), _pad_to(offset, n_pad, groups)
        zero = offset + 8 * scale
        # Groups with scale 0 (padding, or constant blocks in a GGUF file) are all `zero`: q = 8 says so.
        flat = scale == 0
        q = torch.where(flat[..., None], 8, q).view(n_pad, k_pad)
        scale = torch.where(flat, 1.0, scale)
        self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        self.register_buffer("scales_and_zeros", torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(_ACT))

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias=None, group_size: int = GROUP_SIZE) -> Int4Linear:
        n, k = weight.shape
        k_pad = -(-k // group_size) * group_size
        # Padding columns with zeros before grouping keeps the last group's range honest.
        q, scale, offset = int4_groups(_pad_to(weight.float(), n, k_pad), group_size)
        layer = cls(q, scale, offset, bias, group_size)
        layer.in_features = k
        return layer

    @property
    def k_pad(self) -> int:
        return -(-self.in_features // self.group_size) * self.group_size

    def dequantize(self) -> torch.Tensor:
        """The fp32 weight [out_features, k_pad] as the layer computes with it (for inspection and tests)."""
        if self.native:
            return self._gguf[0].dequantize()
        # The kernel times the identity, a block of columns at a time: the weight, whatever the packed layout.
        cols = []
        for c in range(0, self.k_pad, 256):
            eye = torch.eye(self.k_pad, dtype=_ACT)[c : c + 256]
            cols.append(self._torch_int4_mm(eye).float().t())
        return torch.cat(cols, 1)[: self.out_features]

    def _torch_int4_mm(self, x2: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.weight, self.group_size, self.scales_and_zeros)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if self.k_pad != self.in_features:
            x2 = F.pad(x2, (0, self.k_pad - self.in_features))
        if self.native:
            y = self._gguf[0](x2)
        else:  # fast only with bf16 activations; unpacking to a GEMM costs more than it saves, even at 512 rows
            y = self._torch_int4_mm(x2.to(_ACT))[:, : self.out_features]
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        kernel = "C kernels, Q4_1 blocks" if self.native else "PyTorch int4 kernel"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
            f"bias={self.bias is not None}, {kernel}"
        )


# ---------------------------------------------------------------- GGUF blocks -> int4 groups, exactly

# GGUF types whose blocks are 32 4-bit values with one scale and offset: they map onto int4 groups exactly.
EXACT_INT4 = ("Q4_0", "Q4_1", "Q4_K")
# Types at or below 4 bits: int4 costs nothing more than they already lost. Everything else becomes int8.
INT4_SOURCES = (*EXACT_INT4, "Q2_K", "Q3_K")


def gguf_int4_groups(raw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q [rows, K], scale, offset [rows, K/32]) of a Q4_0 / Q4_1 / Q4_K tensor (a gguf.RawTensor), w = q*scale+offset.
    Stacked tensors ([E, N, K]) come back with E*N rows."""
    kind = raw.type.name
    k = raw.shape[-1]
    data = np.ascontiguousarray(raw.data).reshape(-1)
    if kind in ("Q4_0", "Q4_1"):
        size = 18 if kind == "Q4_0" else 20
        blocks = data.reshape(-1, size)
        d = blocks[:, :2].copy().view(np.float16).astype(np.float32)[:, 0]
        if kind == "Q4_0":
            offset = -8 * d
        else:
            offset = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)[:, 0]
        qs = blocks[:, size - 16 :]
        q = np.concatenate([qs & 15, qs >> 4], axis=1)  # values 0..15 low nibbles, 16..31 high nibbles
        scale = d
    elif kind == "Q4_K":
        blocks = data.reshape(-1, 144)  # d, dmin (fp16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
        s = blocks[:, 4:16].astype(np.uint8)
        # sub-block j < 4: scale s[j] & 63, min s[j+4] & 63; j >= 4: low nibble of s[j+4] plus top bits of s[j-4]
        sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
        mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
        scale = (d * sc).reshape(-1)
        offset = (-dmin * mn).reshape(-1)
        qs = blocks[:, 16:].reshape(-1, 4, 32)  # 4 chunks of 64 values: 32 low nibbles, then 32 high nibbles
        q = np.stack([qs & 15, qs >> 4], axis=2).reshape(-1, 32)
    else:
        raise QcoderError(f"tensor {raw.gguf_name!r}: {kind} does not map exactly onto int4 groups")
    rows = int(np.prod(raw.shape[:-1]))
    return (
        torch.from_numpy(np.ascontiguousarray(q)).reshape(rows, k),
        torch.from_numpy(np.asarray(scale, dtype=np.float32)).reshape(rows, k // 32),
        torch.from_numpy(np.asarray(offset, dtype=np.float32)).reshape(rows, k // 32),
    )


# ---------------------------------------------------------------- experts


class QuantExperts(nn.Module):
    """Drop-in for qwen.Experts with one quantized layer per expert and projection."""

    def __init__(self, gate_up: list[nn.Module], down: list[nn.Module]):
        super().__init__()
        self.gate_up = nn.ModuleList(gate_up)
        self.down = nn.ModuleList(down)

    def forward(self, x: torch.Tensor, expert_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return run_grouped_experts(x, expert_ids, weights, len(self.gate_up), self._expert)

    def _expert(self, expert: int, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up[expert](x).chunk(2, dim=-1)
        return self.down[expert](F.silu(gate) * up)


# ---------------------------------------------------------------- the model


def _sources(name: str) -> list[str]:
    """HF names of the checkpoint tensors a fused module of ours was assembled from."""
    if name.endswith(".qkv_proj"):
        base = name[: -len("qkv_proj")]
        return [f"{base}{p}.weight" for p in ("q_proj", "k_proj", "v_proj")]
    if name.endswith("experts.gate_up_proj"):
        base = name[: -len("gate_up_proj")]
        return [f"{base}gate_proj.weight", f"{base}up_proj.weight"]
    if name.endswith(".gate_up_proj"):
        base = name[: -len("gate_up_proj")]
        return [f"{base}gate_proj.weight", f"{base}up_proj.weight"]
    if name.endswith("experts.down_proj"):
        return [f"{name}.weight"]
    return [f"{name}.weight"]


def _choose(name: str, mode: str, gguf) -> str:
    """int8 or int4 for one module: `auto` follows the GGUF source types (int4 only when every shard is <= 4 bits)."""
    if mode != "auto":
        return mode
    if gguf is None:
        return "int8"
    kinds = [gguf.raw(n).type.name for n in _sources(name) if n in gguf.tensor_names]
    return "int4" if kinds and all(k in INT4_SOURCES for k in kinds) else "int8"


def _exact_int4(name: str, gguf, experts: int | None = None):
    """(q, scale, offset) straight from GGUF blocks when every source shard is exactly representable, else None."""
    if gguf is None:
        return None
    names = _sources(name)
    raws = [gguf.raw(n) for n in names if n in gguf.tensor_names]
    if len(raws) != len(names) or any(r.type.name not in EXACT_INT4 for r in raws):
        return None
    parts = [gguf_int4_groups(r) for r in raws]
    if experts:  # stacked [E*N_i, K] per shard -> per expert, shard rows concatenated
        parts = [[t.reshape(experts, -1, t.shape[-1]) for t in p] for p in parts]
        return [tuple(torch.cat([p[i][e] for p in parts]) for i in range(3)) for e in range(experts)]
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))


def _quantize_linear(weight, bias, kind: str, exact=None) -> nn.Module:
    if kind == "int8":
        return Int8Linear(weight, bias)
    if exact is not None:
        return Int4Linear(*exact, bias=bias)
    return Int4Linear.from_float(weight, bias)


def quantize_model(model: nn.Module, mode: str = "int8", gguf=None, lm_head: str = "int8") -> nn.Module:
    """Quantize a loaded QwenForCausalLM in place and return it.

    mode: none | int8 | int4 | auto (with a GGUFCheckpoint: per module from the source types, exact int4 from
    Q4_0/Q4_1/Q4_K blocks; without one: int8). The MoE router stays fp32 (tiny, and routing is sensitive).
    The embedding is int8 in every mode. The LM head is `lm_head` (int8 by default: its error goes straight into
    the logits; int4 only where mode is not int8); a tied head always shares the embedding's int8 weight."""
    _check(mode, lm_head, model)
    if mode == "none":
        return model
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    for name, module in list(model.named_modules()):
        if name == "lm_head" and tied:
            continue
        new = quantize_module(name, module, mode, gguf, lm_head)
        if new is not None:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, new)
    if tied:
        model.lm_head = Int8Linear.shared(model.model.embed_tokens.weight, model.model.embed_tokens.scales)
    return model


def _check(mode: str, lm_head: str, model: nn.Module) -> None:
    if mode != "none" and model.model.norm.weight.device.type != "cpu":
        raise QcoderError(f"weight quantization runs on CPU only (the model is on {model.model.norm.weight.device})")
    if mode not in MODES:
        raise QcoderError(f"unknown quantization {mode!r} (choose {', '.join(MODES)})")
    if lm_head not in ("int8", "int4"):
        raise QcoderError(f"unknown LM head quantization {lm_head!r} (choose int8 or int4)")


def quantize_module(name: str, module: nn.Module, mode: str, gguf=None, lm_head: str = "int8") -> nn.Module | None:
    """The quantized replacement of one module of a QwenForCausalLM (by qualified name), or None to keep it."""
    if gguf is None and mode == "auto":
        mode = "int8"
    if name == "lm_head":
        kind = "int8" if mode == "int8" else lm_head
        exact = _exact_int4(name, gguf) if kind == "int4" else None
        return _quantize_linear(module.weight.data, module.bias, kind, exact)
    if isinstance(module, nn.Embedding):
        return Int8Embedding(module.weight.data, module.weight.dtype)
    if isinstance(module, nn.Linear) and not name.endswith("mlp.gate"):
        kind = _choose(name, mode, gguf)
        exact = _exact_int4(name, gguf) if kind == "int4" else None
        return _quantize_linear(module.weight.data, module.bias, kind, exact)
    if isinstance(module, Experts):
        return _quantize_experts(name, module, mode, gguf)
    return None


def _quantize_experts(name: str, experts: nn.Module, mode: str, gguf) -> QuantExperts:
    num = experts.gate_up_proj.shape[0]
    mods = {}
    for proj in ("gate_up_proj", "down_proj"):
        full = f"{name}.{proj}"
        kind = _choose(full, mode, gguf)
        exact = _exact_int4(full, gguf, experts=num) if kind == "int4" else None
        stacked = getattr(experts, proj).data
        mods[proj] = [_quantize_linear(stacked[e], None, kind, exact[e] if exact else None) for e in range(num)]
    return QuantExperts(mods["gate_up_proj"], mods["down_proj"])


# ---------------------------------------------------------------- quantize while loading


def load_quantized(model: nn.Module, tensors, mode: str, gguf=None, lm_head: str = "int8") -> nn.Module:
    """`model.load_weights(tensors)` then `quantize_model(model, mode, gguf)`, but each module is quantized as soon as
    its last tensor (q/k/v shards, bias included) has been copied in, and its fp32 storage is dropped at once.

    `model` comes from `materialize`: its fp32 storage is allocated but untouched, so pages that are never written never
    become resident. Peak memory is then the quantized model plus one layer's fp32 weights, not the fp32 model."""
    _check(mode, lm_head, model)
    if mode == "none":
        model.load_weights(tensors)
        return model
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    owner = {name: name.rpartition(".")[0] for name in params}
    targets = {
        m
        for m, mod in modules.items()
        if (isinstance(mod, (nn.Linear, Experts)) and not m.endswith("mlp.gate")) or m == "model.embed_tokens"
    }
    if model.lm_head.weight is not model.model.embed_tokens.weight:
        targets.add("lm_head")
    pending = {m: set() for m in targets}
    for name in params:
        if owner[name] in pending:
            pending[owner[name]] |= {(name, shard) for shard in model._expected_shards(name)}
    singles: dict[str, nn.Module] = {}

    def finish(module_name: str) -> None:
        """Quantize one complete module, then free its fp32 storage."""
        singles[module_name] = quantize_module(module_name, modules[module_name], mode, gguf, lm_head)
        for name in params:
            if owner[name] == module_name:
                params[name].data = torch.empty(0, dtype=params[name].dtype)

    def stream():
        for hf_name, tensor in tensors:
            dests = model._destinations(hf_name)
            adopted = None
            if len(dests) == 1 and dests[0][1] == () and dests[0][0] in params:
                param = params[dests[0][0]]
                if (param.shape, param.dtype, param.device) == (tensor.shape, tensor.dtype, tensor.device):
                    # a whole parameter (embedding, head, o/down_proj): take the tensor as its storage, so that
                    # load_weights copies it onto itself instead of into a second fp32 copy
                    param.data, adopted = tensor, dests[0][0]
            yield hf_name, tensor
            for name, _, shards in dests:
                m = owner.get(name)
                if m in pending and pending[m]:
                    pending[m] -= {(name, shard) for shard in shards}
                    if not pending[m]:
                        finish(m)
            # load_weights asks for the next tensor only after copying this one in, but keeps a reference to it
            # until then: free the storage now, before the next one is dequantized (unless a parameter kept it).
            if adopted is None or params[adopted].numel() == 0:
                try:
                    tensor.untyped_storage().resize_(0)
                except RuntimeError:  # borrowed storage (numpy, mmap): freed when dropped
                    pass
            del tensor

    model.load_weights(stream())
    release_freed_memory()
    for module_name, new in singles.items():
        parent, _, attr = module_name.rpartition(".")
        setattr(model.get_submodule(parent), attr, new)
    if "lm_head" not in singles:  # tied: the head reads the embedding's int8 weight
        model.lm_head = Int8Linear.shared(model.model.embed_tokens.weight, model.model.embed_tokens.scales)
    return model


def gguf_tensors(checkpoint, chunk_rows: int = 4096):
    """(HF name, fp32 tensor) like `GGUFCheckpoint.tensors()`, but big tensors are dequantized a block of rows at a
    time into one preallocated tensor: gguf-py's numpy dequantizers hold several full-size temporaries, which for
    a 151936-row embedding is gigabytes of peak memory."""
    from qcoder.model.gguf import RawTensor, dequantize

    for name in checkpoint.tensor_names:
        raw = checkpoint.raw(name)
        rows = int(np.prod(raw.shape[:-1]))
        if rows <= chunk_rows:
            yield name, dequantize(raw)
            continue
        out = torch.empty(raw.shape, dtype=torch.float32)
        flat, data = out.view(rows, raw.shape[-1]), raw.data.reshape(rows, -1)
        for i in range(0, rows, chunk_rows):
            part = data[i : i + chunk_rows]
            flat[i : i + len(part)] = dequantize(
                RawTensor(name, raw.gguf_name, raw.type, (len(part), raw.shape[-1]), part)
            )
        yield name, out
        del out, flat
