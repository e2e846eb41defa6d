"""deploy/sizing.py: figures computed from model configs, checked by hand for one model, and docs kept current."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import DEPLOY, REPO

SCRIPT = DEPLOY / "sizing.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_qwen25_coder_05b_matches_the_hand_checked_figures():
    out = run("--json", "--model", "qwen2.5-coder-0.5b-instruct")
    assert out.returncode == 0, out.stderr
    fig = json.loads(out.stdout)
    model = fig["models"][0]
    # By hand: embeddings 151936*896 (tied) = 136,134,656; per layer q 896*896+896, k and v 896*128+128 each,
    # o 896*896, MLP 3*896*4864, two norms 2*896 = 14,912,384; 24 layers + final norm 896 -> 494,032,768
    # (the model card's 0.49B).
    assert model["params_total"] == model["params_active"] == 494_032_768
    assert model["weight_bytes"] == {"bf16": 988_065_536, "fp8": 494_032_768, "int4": 262_454_908}
    # K and V x 24 layers x 2 KV heads x 64 dims x 2 bytes = 12,288 bytes a token; 32K tokens -> 384 MiB.
    assert model["kv_bytes_per_token"] == 12_288
    assert model["kv_bytes_per_sequence"] == {"32K": 402_653_184, "256K": None, "1M": None}
    [deployment] = fig["deployments"]
    assert deployment["gpus"] == 1
    assert "--tool-call-parser hermes" in deployment["vllm_flags"]


def test_480b_needs_expert_parallel_and_two_nodes_of_80gb(sizing):
    [model] = sizing.load_models(["Qwen3-Coder-480B-A35B-Instruct"], None)
    total, active = model.params()
    assert round(total / 1e9) == 480 and round(active / 1e9) == 35  # the model card's 480B-A35B
    assert model.kv_bytes_per_token() == 2 * 62 * 8 * 128 * 2
    assert sizing.gpus_needed(model, "fp8", 256 * 1024, gpu_gb=80) == 16
    assert sizing.gpus_needed(model, "fp8", 256 * 1024, gpu_gb=141) == 8
    flags = sizing.vllm_flags(model, "fp8", 1024 * 1024, 16)
    # 2560 / 8 = 320 columns per GPU: not whole 128-wide FP8 blocks, so experts go whole to GPUs instead.
    assert "--enable-expert-parallel" in flags
    assert "--pipeline-parallel-size 2" in flags and "--tensor-parallel-size 8" in flags
    assert any('"factor":4.0' in f and '"original_max_position_embeddings":262144' in f for f in flags)


def shared_30b_config():
    for folder in (REPO, *REPO.parents):
        candidate = folder.parent / "shared" / "data" / "qwen3-coder-30b-a3b-instruct"
        if (candidate / "config.json").is_file():
            return candidate
    pytest.skip("the Qwen3-Coder-30B-A3B config is not in shared/data beside this checkout")


def test_30b_parameters_match_its_checkpoint_size(sizing):
    """Counted from config.json, the parameters are exactly the bf16 checkpoint's bytes / 2 (its index's total)."""
    folder = shared_30b_config()
    [model] = sizing.load_models(["Qwen3-Coder-30B-A3B-Instruct"], folder / "config.json")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert model.params()[0] * 2 == index["metadata"]["total_size"]
    assert 3.3e9 <= model.params()[1] < 3.4e9  # the card's "3.3B activated" (ours counts both embedding tables)


def test_docs_tables_are_current(sizing):
    folder = shared_30b_config()
    tables = sizing.markdown(sizing.figures(sizing.load_models(list(sizing.MODEL_NAMES), folder / "config.json")))
    docs = (REPO / "docs" / "deploy.md").read_text()
    assert f"{sizing.BEGIN}\n{tables}{sizing.END}" in docs, "python deploy/sizing.py --write-docs docs/deploy.md"


def test_missing_config_is_one_clear_error(tmp_path):
    out = run("--config-30b", str(tmp_path / "nope.json"))
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.startswith("sizing: error: Qwen3-Coder-30B-A3B-Instruct config.json not found")
    assert out.stderr.count("\n") == 1
