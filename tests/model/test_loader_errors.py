"""Every expected loading failure is one QcoderError line that names the file and what is wrong with it."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from qcoder.errors import QcoderError
from qcoder.model.loader import load_model


@pytest.fixture
def checkpoint(tiny_model_dir, tmp_path):
    """A writable copy of the tiny Qwen3 checkpoint."""
    target = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir("qwen3"), target)
    return target


def load_error(path) -> str:
    with pytest.raises(QcoderError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def edit_config(directory, **changes):
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    config_file.write_text(json.dumps(config))


def edit_weights(directory, change):
    weights_file = directory / "model.safetensors"
    tensors = load_file(weights_file)
    change(tensors)
    save_file(tensors, weights_file)


def test_missing_path(tmp_path):
    assert load_error(tmp_path / "nowhere") == f"{tmp_path / 'nowhere'}: no such file or directory"


def test_directory_without_config_json(tmp_path):
    message = load_error(tmp_path)
    assert str(tmp_path / "config.json") in message and "not found" in message


def test_file_that_is_not_gguf(tmp_path):
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\0" * 16)
    assert ".gguf" in load_error(weights) and str(weights) in load_error(weights)


def test_config_that_is_not_json(checkpoint):
    (checkpoint / "config.json").write_text("{not json")
    assert load_error(checkpoint).startswith(f"{checkpoint / 'config.json'}: not valid JSON")


@pytest.mark.parametrize("model_type", ["llama", "qwen3"])
def test_unknown_architecture(checkpoint, model_type):
    edit_config(checkpoint, architectures=["LlamaForCausalLM"], model_type=model_type)
    message = load_error(checkpoint)
    assert str(checkpoint / "config.json") in message and "'LlamaForCausalLM'" in message


def test_missing_required_field(checkpoint):
    edit_config(checkpoint, hidden_size=None)
    assert load_error(checkpoint) == f"{checkpoint / 'config.json'}: missing required field 'hidden_size'"


def test_unsupported_rope_type(checkpoint):
    edit_config(checkpoint, rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0})
    message = load_error(checkpoint)
    assert str(checkpoint / "config.json") in message and "'longrope'" in message


def test_no_weights(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    assert "no model.safetensors" in load_error(checkpoint)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors(checkpoint, damage):
    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"this is not a safetensors file" if damage == "garbage" else data[: len(data) // 2])
    message = load_error(checkpoint)
    assert message.startswith(f"{weights}: not a readable safetensors file")


def test_shape_mismatch_names_the_tensor(checkpoint):
    name = "model.layers.1.self_attn.k_proj.weight"
    edit_weights(checkpoint, lambda t: t.update({name: t[name][:8].contiguous()}))
    message = load_error(checkpoint)
    assert message.startswith(f"{checkpoint / 'model.safetensors'}: tensor '{name}' has shape [8, 64]")


def test_missing_tensor(checkpoint):
    edit_weights(checkpoint, lambda t: t.pop("model.layers.2.mlp.up_proj.weight"))
    message = load_error(checkpoint)
    assert (
        message
        == f"{checkpoint}: the checkpoint has no weights for 'model.layers.2.mlp.gate_up_proj.weight' (missing up_proj)"
    )


def test_unexpected_tensor(checkpoint):
    edit_weights(
        checkpoint, lambda t: t.update({"model.layers.0.mlp.shared_expert.weight": t["model.norm.weight"].clone()})
    )
    assert "unexpected tensor 'model.layers.0.mlp.shared_expert.weight'" in load_error(checkpoint)


def test_index_listing_a_missing_shard(tiny_model_dir, tmp_path):
    from tests.conftest import tiny_checkpoint

    tiny_checkpoint("qwen2", tmp_path, max_shard_size="60KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    message = load_error(tmp_path)
    assert str(tmp_path / "model.safetensors.index.json") in message and shard.name in message


def test_missing_expert_tensor(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir("qwen3_moe"), tmp_path / "moe")
    edit_weights(tmp_path / "moe", lambda t: t.pop("model.layers.2.mlp.experts.5.down_proj.weight"))
    message = load_error(tmp_path / "moe")
    assert "'model.layers.2.mlp.experts.down_proj'" in message and "('down_proj', 5)" in message


def test_moe_config_without_expert_count(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir("qwen3_moe"), tmp_path / "moe")
    edit_config(tmp_path / "moe", num_local_experts=None)
    assert load_error(tmp_path / "moe") == f"{tmp_path / 'moe' / 'config.json'}: missing required field 'num_experts'"
