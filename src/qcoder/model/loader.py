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
    if not path.exists():
        raise QcoderError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix != ".gguf":
            raise QcoderError(f"{path}: expected a Hugging Face model directory or a .gguf file")
        from qcoder.model.gguf import GGUFCheckpoint

        checkpoint = GGUFCheckpoint(path)
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
        model.load_weights(tensors)
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
