"""Read a GGUF checkpoint (llama.cpp's format): model config, weights and tokenizer metadata.

The file is memory-mapped by `gguf.GGUFReader`; weights are dequantized to fp32 one tensor at a time, so loading
never holds more than one dequantized tensor beside the model. Names are translated to Hugging Face names, so the
model's `load_weights` reads a GGUF file and a safetensors directory alike.

Shapes: GGUF lists dimensions innermost first (ne[0] = columns); the reader reverses them, so a tensor's numpy shape
is already the HF (row-major) shape, e.g. attn_q [hidden, q_dim] in GGUF is q_proj [q_dim, hidden]. Stacked experts
come out as [E, I, H] (gate/up) and [E, H, I] (down). Unlike llama, llama.cpp's converter does not permute q/k rows
for Qwen (both use NEOX-style rotary), so q_proj/k_proj are used as stored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf import quants as gguf_quants

from qcoder.errors import QcoderError
from qcoder.files import keep_newest, write_atomic
from qcoder.model.config import ModelConfig

T = GGMLQuantizationType
SUPPORTED_TYPES = (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)

# general.architecture in GGUF -> ModelConfig.architecture
ARCHITECTURES = {"qwen2": "qwen2", "qwen3": "qwen3", "qwen3moe": "qwen3_moe"}

# Big per-token arrays: left out of `.metadata` and read only by `tokenizer_metadata()`.
_TOKEN_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")

_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_gate_inp": "mlp.gate",
    "ffn_gate_exps": "mlp.experts.gate_proj",
    "ffn_up_exps": "mlp.experts.up_proj",
    "ffn_down_exps": "mlp.experts.down_proj",
}

# What the reader raises on a damaged file: short reads show up as IndexError / reshape ValueError.
_READ_ERRORS = (ValueError, IndexError, KeyError, TypeError, OverflowError, OSError)


class _Reader(GGUFReader):
    """GGUFReader that keeps each metadata array as one run of bytes, decoded on demand.

    The stock reader makes a numpy view per array element: ~16 s to open a Qwen file for its 150k-entry token and
    merge lists. Here an array is one part [item type, count, bytes], and opening takes a fraction of a second."""

    def _get_field_parts(self, orig_offs: int, raw_type: int):
        if raw_type != GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        item_type, count = self._get(orig_offs, np.uint32), self._get(orig_offs + 4, np.uint64)
        kind, start = GGUFValueType(int(item_type[0])), orig_offs + 12
        if kind == GGUFValueType.STRING:
            end = _skip_strings(self.data, start, int(count[0]), self._int_order())
        elif kind in self.gguf_scalar_to_np:
            end = start + int(count[0]) * np.dtype(self.gguf_scalar_to_np[kind]).itemsize
        else:
            raise ValueError(f"nested metadata array at offset {orig_offs}")
        if end > len(self.data):
            raise ValueError(f"metadata array at offset {orig_offs} runs past the end of the file")
        items = self._get(start, np.uint8, end - start)
        return end - orig_offs, [item_type, count, items], [2], [GGUFValueType.ARRAY, kind]

    def _int_order(self) -> str:
        """Byte order of the file's integers, for int.from_bytes."""
        if self.byte_order == "I":
            return sys.byteorder
        return "big" if sys.byteorder == "little" else "little"

    def value(self, key: str) -> Any:
        """A metadata value as plain Python (arrays as lists)."""
        field = self.fields[key]
        if field.types[0] != GGUFValueType.ARRAY:
            return field.contents()
        kind, count, items = field.types[-1], int(field.parts[-2][0]), field.parts[-1]
        if kind == GGUFValueType.STRING:
            return _read_strings(items, count, self._int_order())
        dtype = np.dtype(self.gguf_scalar_to_np[kind]).newbyteorder(self.byte_order)
        return items.view(dtype).tolist()


def _length_reader(order: str):
    """unpack_from(buffer, offset) -> (length,) for the u64 before each string; struct reads it without a slice,
    3x faster than int.from_bytes on the 300k strings of a Qwen vocabulary (loading time)."""
    return struct.Struct("<Q" if order == "little" else ">Q").unpack_from


def _skip_strings(data: np.ndarray, offset: int, count: int, order: str) -> int:
    """Offset just past `count` length-prefixed strings (u64 length, then UTF-8 bytes)."""
    view, end, length = memoryview(data), len(data), _length_reader(order)
    for _ in range(count):
        if offset + 8 > end:
            raise ValueError("string array runs past the end of the file")
        offset += 8 + length(view, offset)[0]
    return offset


def _read_strings(data: np.ndarray, count: int, order: str) -> list[str]:
    buffer, offset, length, out = bytes(data), 0, _length_reader(order), []
    append = out.append
    for _ in range(count):
        size = length(buffer, offset)[0]
        offset += 8
        append(buffer[offset : offset + size].decode())
        offset += size
    return out


@dataclass(frozen=True)
class RawTensor:
    """One tensor as stored, for kernels that consume quantized blocks directly.

    `data` is memory-mapped. For F32/F16 it holds the elements in `shape`; for every other type it is uint8 of shape
    [*shape[:-1], bytes per row], each row a run of blocks of `type` (see gguf.constants.GGML_QUANT_SIZES)."""

    name: str  # HF name
    gguf_name: str
    type: GGMLQuantizationType
    shape: tuple[int, ...]  # logical (HF) shape
    data: np.ndarray


def dequantize(raw: RawTensor) -> torch.Tensor:
    """fp32 copy of a stored tensor."""
    if raw.type not in SUPPORTED_TYPES:
        supported = ", ".join(t.name for t in SUPPORTED_TYPES)
        raise QcoderError(f"tensor {raw.gguf_name!r} has type {raw.type.name}, which qcoder cannot read ({supported})")
    # A plain ndarray view of the map: numpy runs ~4x slower on np.memmap slices.
    values = gguf_quants.dequantize(np.asarray(raw.data), raw.type)
    if not values.flags.writeable:  # F32 comes back as a view of the read-only memory map
        values = values.copy()
    return torch.from_numpy(values).reshape(raw.shape)


def hf_name(gguf_name: str) -> str | None:
    """The Hugging Face name of a GGUF tensor, or None when qcoder does not know it."""
    stem, _, leaf = gguf_name.rpartition(".")
    if stem in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[stem]}.{leaf}"
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
    if match and match[2] in _LAYER_NAMES:
        return f"model.layers.{match[1]}.{_LAYER_NAMES[match[2]]}.{leaf}"
    return None


def open_checkpoint(path) -> GGUFCheckpoint:
    """The GGUFCheckpoint of a file, shared by whoever opens the same unchanged file next (the loader, then the
    tokenizer): parsing a Qwen file's metadata takes about 0.3 s of the load. Treat it as read-only.

    "Unchanged": same inode, size and mtime, and the same bytes where the metadata lives (a file rewritten within
    the file system's timestamp granularity must not come back stale; hashing them costs a few milliseconds)."""
    path = Path(path)
    try:
        stat = path.stat()
        with open(path, "rb") as f:
            head = hashlib.blake2b(f.read(_HEAD_BYTES), digest_size=16).digest()
    except FileNotFoundError:
        raise QcoderError(f"{path}: no such file") from None
    except OSError as e:
        raise QcoderError(f"{path}: cannot read ({e.strerror or e})") from None
    return _open_unchanged(str(path), (stat.st_ino, stat.st_size, stat.st_mtime_ns, head))


_HEAD_BYTES = 1 << 20  # all of a small file; the start of a real one (its vocabulary)


@functools.lru_cache(maxsize=1)
def _open_unchanged(path: str, identity: tuple) -> GGUFCheckpoint:
    return GGUFCheckpoint(path, identity)


# Parsing the header steps over the 300k vocabulary strings one by one: about a quarter of a warm load. The parsed
# header (metadata less the token arrays; tensor names, types, offsets) is kept per unchanged file, so a warm
# load only maps the file. An entry that cannot be read is parsed again.
_HEADER_FORMAT = 1
_HEADER_KEEP = 8


def _header_file(path: Path, identity: tuple) -> Path:
    from qcoder.model.registry import cache_dir

    key = f"{path.resolve()}|{identity[:3]}|{identity[3].hex()}|{_HEADER_FORMAT}"
    return cache_dir() / "gguf-headers" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")


def _read_header(file: Path) -> tuple[dict, list] | None:
    try:
        header = json.loads(file.read_text(encoding="utf-8"))
        return header["metadata"], header["tensors"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_header(file: Path, metadata: dict, tensors: list) -> None:
    """Never an error: an unwritable cache only costs load time. Old entries are pruned."""
    try:
        write_atomic(file, json.dumps({"metadata": metadata, "tensors": tensors}))
        keep_newest(file.parent, "*.json", _HEADER_KEEP)
    except (OSError, TypeError, ValueError):
        pass


class GGUFCheckpoint:
    """One .gguf file: `.architecture` (GGUF's name), `.metadata`, `.config`, `.tensors()`, `.raw(name)`,
    `.tokenizer_metadata()`. Every problem with the file is a one-line QcoderError that names it."""

    def __init__(self, path, identity: tuple | None = None):
        """identity: (inode, size, mtime_ns, digest of the head), as open_checkpoint takes it; with it, the parsed
        header is cached."""
        self.path = Path(path)
        cache = _header_file(self.path, identity) if identity else None
        header = _read_header(cache) if cache else None
        if header is None:
            header = self._parse_header()
            if cache:
                _write_header(cache, *header)
        metadata, tensors = header
        self.metadata: dict[str, Any] = metadata
        parts = self._get("split.count", int, 1)
        if parts > 1:
            raise QcoderError(
                f"{self.path}: one of {parts} split GGUF files; merge them with `llama-gguf-split --merge`"
            )
        arch = self._need("general.architecture", str)
        if arch not in ARCHITECTURES:
            raise QcoderError(
                f"{self.path}: unsupported architecture {arch!r} (qcoder reads {', '.join(ARCHITECTURES)})"
            )
        self.architecture: str = arch
        self._raw: dict[str, RawTensor] = {}
        try:
            data = np.memmap(self.path, mode="r")
            for gguf_name, kind, shape, offset, dtype, data_shape in tensors:
                name = hf_name(gguf_name)
                if name is None:
                    raise QcoderError(f"{self.path}: unknown tensor {gguf_name!r} for a {arch} model")
                dtype = np.dtype(dtype)
                end = offset + int(np.prod(data_shape)) * dtype.itemsize
                view = data[offset:end].view(dtype).reshape(data_shape)
                self._raw[name] = RawTensor(name, gguf_name, GGMLQuantizationType(kind), tuple(shape), view)
        except _READ_ERRORS as e:
            raise self._unreadable(e) from None
        self.config = self._build_config()

    def _parse_header(self) -> tuple[dict, list]:
        """(metadata, tensors), each tensor [GGUF name, type, HF shape, offset, numpy dtype, stored shape]."""
        reader = self._reader
        try:
            metadata = {
                key: reader.value(key)
                for key in reader.fields
                if not key.startswith("GGUF.") and key not in _TOKEN_ARRAYS
            }
        except _READ_ERRORS as e:
            raise self._unreadable(e) from None
        tensors = [
            [t.name, int(t.tensor_type), [int(d) for d in reversed(t.shape.tolist())], int(t.data_offset),
             t.data.dtype.str, list(t.data.shape)]
            for t in reader.tensors
        ]
        return metadata, tensors

    @functools.cached_property
    def _reader(self) -> _Reader:
        """The parsed file: for the header on a cache miss, and for the token arrays that the cache leaves out."""
        try:
            return _Reader(self.path)
        except FileNotFoundError:
            raise QcoderError(f"{self.path}: no such file") from None
        except _READ_ERRORS as e:
            raise self._unreadable(e) from None

    def _unreadable(self, error: Exception) -> QcoderError:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return QcoderError(f"{self.path}: not a readable GGUF file ({reason})")

    # --- weights ---

    @property
    def tensor_names(self) -> list[str]:
        """HF names of the stored tensors, in file order."""
        return list(self._raw)

    def raw(self, name: str) -> RawTensor:
        if name not in self._raw:
            raise QcoderError(f"{self.path}: no tensor {name!r}")
        return self._raw[name]

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, fp32 tensor), one at a time."""
        for name, raw in self._raw.items():
            try:
                yield name, dequantize(raw)
            except QcoderError as e:
                raise QcoderError(f"{self.path}: {e}") from None

    # --- config ---

    def _build_config(self) -> ModelConfig:
        a = self.architecture
        hidden = self._need(f"{a}.embedding_length", int)
        heads = self._need(f"{a}.attention.head_count", int)
        embedding = self._raw.get("model.embed_tokens.weight")
        if embedding is None:
            raise QcoderError(f"{self.path}: missing tensor 'token_embd.weight'")
        moe = {}
        if a == "qwen3moe":
            moe = dict(
                num_experts=self._need(f"{a}.expert_count", int),
                num_experts_per_tok=self._need(f"{a}.expert_used_count", int),
                moe_intermediate_size=self._need(f"{a}.expert_feed_forward_length", int),
                # llama.cpp always renormalises the top-k weights for qwen3moe; newer files say so explicitly.
                norm_topk_prob=bool(self._get(f"{a}.expert_weights_norm", bool, True)),
            )
        return ModelConfig(
            architecture=ARCHITECTURES[a],
            vocab_size=embedding.shape[0],
            hidden_size=hidden,
            # Qwen3-MoE has no dense layers in llama.cpp, so its dense width may be absent.
            intermediate_size=self._get(f"{a}.feed_forward_length", int, 0)
            if moe
            else self._need(f"{a}.feed_forward_length", int),
            num_hidden_layers=self._need(f"{a}.block_count", int),
            num_attention_heads=heads,
            # llama.cpp's defaults when a key is absent:
            num_key_value_heads=self._get(f"{a}.attention.head_count_kv", int, heads),
            head_dim=self._get(f"{a}.attention.key_length", int, hidden // heads),
            rms_norm_eps=self._need(f"{a}.attention.layer_norm_rms_epsilon", float),
            rope_theta=self._get(f"{a}.rope.freq_base", float, 10000.0),
            rope_scaling=self._rope_scaling(),
            max_position_embeddings=self._need(f"{a}.context_length", int),
            tie_word_embeddings="lm_head.weight" not in self._raw,
            attention_bias=a == "qwen2" or "model.layers.0.self_attn.q_proj.bias" in self._raw,
            qk_norm=a != "qwen2",
            **moe,
        )

    def _rope_scaling(self) -> dict | None:
        a = self.architecture
        kind = self._get(f"{a}.rope.scaling.type", str, "none")
        if kind == "none":
            return None
        if kind != "yarn":
            raise QcoderError(f"{self.path}: unsupported {a}.rope.scaling.type {kind!r} (qcoder supports yarn)")
        scaling = {
            "rope_type": "yarn",
            "factor": self._need(f"{a}.rope.scaling.factor", float),
            "original_max_position_embeddings": self._need(f"{a}.rope.scaling.original_context_length", int),
        }
        for gguf_key, hf_key in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
            value = self._get(f"{a}.rope.scaling.{gguf_key}", float, None)
            if value is not None:
                scaling[hf_key] = value
        return scaling

    # --- tokenizer ---

    def tokenizer_metadata(self) -> dict[str, Any]:
        """The BPE vocabulary and special tokens from `tokenizer.ggml.*`, plus the chat template."""
        tokens = self._need_array("tokenizer.ggml.tokens")
        return dict(
            model=self._get("tokenizer.ggml.model", str, None),
            tokens=tokens,
            merges=self._need_array("tokenizer.ggml.merges"),
            token_types=self._need_array("tokenizer.ggml.token_type"),
            pre=self._get("tokenizer.ggml.pre", str, "default"),
            bos_token_id=self._get("tokenizer.ggml.bos_token_id", int, None),
            eos_token_id=self._get("tokenizer.ggml.eos_token_id", int, None),
            padding_token_id=self._get("tokenizer.ggml.padding_token_id", int, None),
            add_bos_token=bool(self._get("tokenizer.ggml.add_bos_token", bool, False)),
            chat_template=self._get("tokenizer.chat_template", str, None),
        )

    def _need_array(self, key: str) -> list:
        if key not in self._reader.fields:
            raise QcoderError(f"{self.path}: missing metadata key {key!r}")
        try:
            value = self._reader.value(key)
        except UnicodeDecodeError as e:
            raise QcoderError(f"{self.path}: metadata key {key!r} is not valid UTF-8 ({e.reason})") from None
        if not isinstance(value, list):
            raise QcoderError(f"{self.path}: metadata key {key!r} is not an array")
        return value

    # --- metadata access ---

    def _need(self, key: str, kind: type):
        if key not in self.metadata:
            raise QcoderError(f"{self.path}: missing metadata key {key!r}")
        return self._get(key, kind, None)

    def _get(self, key: str, kind: type, default):
        if key not in self.metadata:
            return default
        value = self.metadata[key]
        # bool is an int in Python, but a count or an id given as true/false is a broken file.
        ok = isinstance(value, int) and not isinstance(value, bool) if kind is int else isinstance(value, kind)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise QcoderError(f"{self.path}: metadata key {key!r} is {value!r}, expected {kind.__name__}")
        return value
