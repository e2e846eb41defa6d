"""Load a checkpoint (Hugging Face directory or .gguf file) into a QwenForCausalLM.

The module is built on the meta device (no random init, no memory), materialised uninitialised on the target device,
then filled tensor by tensor from the checkpoint, so the weights are never held twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from qcoder.errors import QcoderError
from qcoder.model.config import ModelConfig
from qcoder.model.qwen import QwenForCausalLM
from qcoder.threads import configure_malloc

logger = logging.getLogger(__name__)


def load_model(
    path, dtype: torch.dtype = torch.float32, device="cpu", quant: str = "none"
) -> tuple[QwenForCausalLM, ModelConfig]:
    """quant: "none", "int8", "int4" or "auto". auto: a GGUF's linear weights compute straight from the file's
    quantized blocks (qcoder.model.gguf_linear), or, where those kernels cannot run, become int8/int4 layers;
    a safetensors checkpoint stays in `dtype`. Quantized kernels are CPU-only: on a GPU, auto is none."""
    path = Path(path)
    if quant == "auto" and torch.device(device).type != "cpu":
        quant = "none"
    if torch.device(device).type == "cpu":
        configure_malloc()
    if not path.exists():
        raise QcoderError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix != ".gguf":
            raise QcoderError(f"{path}: expected a Hugging Face model directory or a .gguf file")
        from qcoder.model.gguf import open_checkpoint

        checkpoint = open_checkpoint(path)
        if quant == "auto":
            from qcoder.model.gguf_linear import load_native, why_not_native

            reason = why_not_native(checkpoint)
            if reason is None:
                return load_native(checkpoint, dtype), checkpoint.config
            logger.info("%s: GGUF kernels not used (%s); quantizing to int8/int4", path, reason)
        if quant == "none":
            tensors = checkpoint.tensors()
        else:
            from qcoder.model.quant import gguf_tensors

            tensors = gguf_tensors(checkpoint)  # dequantized in row chunks: lower peak memory
        try:
            return _build(checkpoint.config, tensors, dtype, device, quant, gguf=checkpoint), checkpoint.config
        except QcoderError as e:
            raise QcoderError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None

    config = ModelConfig.from_hf_dict(_read_json(path / "config.json"), source=str(path / "config.json"))
    reader = _SafetensorsReader(path, _weight_files(path))
    try:
        model = _build(config, reader.tensors(), dtype, device, "none" if quant == "auto" else quant)
    except QcoderError as e:
        raise QcoderError(f"{reader.current}: {e}") from None
    return model, config


def _build(config: ModelConfig, tensors, dtype: torch.dtype, device, quant: str, gguf=None) -> QwenForCausalLM:
    with torch.device("meta"):
        model = QwenForCausalLM(config, dtype)
    model.materialize(device)
    if quant == "none":
        load_weights(model, tensors)
    else:
        from qcoder.model.quant import load_quantized

        # each module is quantized as soon as its weights are in, so the fp32 model never exists whole
        load_quantized(model, tensors, quant, gguf=gguf)
    model.requires_grad_(False)
    return model.eval()


def _read_json(file: Path) -> dict:
    if not file.is_file():
        raise QcoderError(f"{file}: not found (a Hugging Face model directory needs config.json)")
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise QcoderError(f"{file}: not valid JSON ({e})") from None


def _weight_files(directory: Path) -> list[Path]:
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    index_file = directory / "model.safetensors.index.json"
    if not index_file.is_file():
        raise QcoderError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    weight_map = _read_json(index_file).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise QcoderError(f"{index_file}: missing required field 'weight_map'")
    files = [directory / name for name in sorted(set(weight_map.values()))]
    for file in files:
        if not file.is_file():
            raise QcoderError(f"{index_file}: lists shard {file.name}, which is missing")
    return files


class _SafetensorsReader:
    """Yields (name, tensor) from each file in turn and remembers which file it is reading (for error messages)."""

    def __init__(self, directory: Path, files: list[Path]):
        self.files = files
        self.current = directory  # the file being read; the directory before and after

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        from safetensors import SafetensorError, safe_open

        for file in self.files:
            self.current = file
            try:
                with safe_open(file, framework="pt") as f:
                    for name in f.keys():
                        yield name, f.get_tensor(name)
            except (SafetensorError, OSError) as e:
                raise QcoderError(f"not a readable safetensors file ({str(e).splitlines()[0]})") from None
        self.current = self.files[0].parent


# ----- HF weight names -> the model's fused parameters -----


def load_weights(model, weights) -> None:
    """Consume (hf_name, tensor) pairs one at a time, copying each into place (fusing q/k/v and gate/up,
    stacking experts). Raises QcoderError on an unknown name, a shape mismatch or a missing tensor."""
    model.tie_weights()
    params = dict(model.named_parameters())
    filled: dict[str, set] = {name: set() for name in params}
    for hf_name, tensor in weights:
        for name, index, shards in weight_destinations(model.config, hf_name):
            if name not in params:
                raise QcoderError(f"unexpected tensor {hf_name!r} for this {model.config.architecture} model")
            target = params[name].data[index]
            if target.shape != tensor.shape:
                raise QcoderError(
                    f"tensor {hf_name!r} has shape {list(tensor.shape)}, the model expects {list(target.shape)}"
                )
            target.copy_(tensor)
            filled[name].update(shards)
    for name in params:
        missing = expected_shards(model.config, name) - filled[name]
        if missing:
            parts = sorted(str(shard) for shard in missing if shard is not None)
            detail = f" (missing {', '.join(parts[:4])}{', ...' if len(parts) > 4 else ''})" if parts else ""
            raise QcoderError(f"the checkpoint has no weights for {name!r}{detail}")


def expected_shards(config, name: str) -> set:
    """The pieces a parameter is assembled from: q/k/v, gate/up, and one (or two) per expert."""
    experts = range(config.num_experts)
    if name.endswith("experts.gate_up_proj"):
        return {(proj, e) for proj in ("gate_proj", "up_proj") for e in experts}
    if name.endswith("experts.down_proj"):
        return {("down_proj", e) for e in experts}
    if ".qkv_proj." in name:
        return {"q_proj", "k_proj", "v_proj"}
    if ".gate_up_proj." in name:
        return {"gate_proj", "up_proj"}
    return {None}


def weight_destinations(config, hf_name: str) -> list[tuple[str, tuple, set]]:
    """Where an HF tensor goes: [(our parameter name, index into it, shards it fills)]."""
    if "rotary_emb.inv_freq" in hf_name or (hf_name == "lm_head.weight" and config.tie_word_embeddings):
        return []  # recomputed / shared with the embedding
    c = config
    parts = hf_name.split(".")
    if "experts" in parts:
        return _expert_destinations(config, hf_name, parts)
    path, proj, leaf = ".".join(parts[:-2]), parts[-2], parts[-1]
    q, kv, inter = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size
    rows = {
        "q_proj": ("qkv_proj", slice(0, q)),
        "k_proj": ("qkv_proj", slice(q, q + kv)),
        "v_proj": ("qkv_proj", slice(q + kv, q + 2 * kv)),
        "gate_proj": ("gate_up_proj", slice(0, inter)),
        "up_proj": ("gate_up_proj", slice(inter, 2 * inter)),
    }
    if proj in rows:
        fused, index = rows[proj]
        return [(f"{path}.{fused}.{leaf}", (index,), {proj})]
    return [(hf_name, (), {None})]


def _expert_destinations(config, hf_name: str, parts: list[str]) -> list[tuple[str, tuple, set]]:
    """Experts come one by one (`experts.E.gate_proj.weight`), stacked per projection (`experts.gate_proj.weight`
    [E, I, H]) or stacked and fused as transformers 5 keeps them (`experts.gate_up_proj` [E, 2I, H])."""
    at = parts.index("experts")
    stack = ".".join(parts[: at + 1])
    rest = parts[at + 1 :]
    if rest and rest[-1] == "weight":
        rest = rest[:-1]
    if len(rest) == 2 and rest[0].isdigit():
        experts, proj = [int(rest[0])], rest[1]
        prefix: tuple = (int(rest[0]),)
    elif len(rest) == 1:
        experts, proj, prefix = list(range(config.num_experts)), rest[0], (slice(None),)
    else:
        return [(hf_name, (), {None})]  # reported as unexpected
    inter = config.moe_intermediate_size
    halves = {"gate_proj": slice(0, inter), "up_proj": slice(inter, 2 * inter)}
    if proj in halves:
        return [(f"{stack}.gate_up_proj", (*prefix, halves[proj]), {(proj, e) for e in experts})]
    if proj == "gate_up_proj":
        shards = {(p, e) for p in halves for e in experts}
        return [(f"{stack}.gate_up_proj", prefix, shards)]
    if proj == "down_proj":
        return [(f"{stack}.down_proj", prefix, {("down_proj", e) for e in experts})]
    return [(hf_name, (), {None})]
