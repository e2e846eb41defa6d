"""deploy/entrypoint.sh as a script: container environment -> `qcoder` arguments, and the API key file.

A stand-in `qcoder` on PATH records the arguments and the environment it was started with; one test runs the real
CLI to show that the flags the script builds are ones `qcoder serve` understands.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DEPLOY, REPO

ENTRYPOINT = DEPLOY / "entrypoint.sh"

RECORDER = """#!{python}
import json, os, sys
json.dump({{"argv": sys.argv[1:], "api_key": os.environ.get("QCODER_API_KEY"),
           "key_file": os.environ.get("QCODER_API_KEY_FILE")}}, sys.stdout)
"""


@pytest.fixture
def bin_dir(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "qcoder"
    fake.write_text(RECORDER.format(python=sys.executable))
    fake.chmod(0o755)
    return folder


def run_entrypoint(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(bin_dir)}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def recorded(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_no_arguments_serve_on_every_interface(bin_dir):
    assert recorded(run_entrypoint(bin_dir))["argv"] == ["serve", "--host", "0.0.0.0"]


def test_environment_becomes_serve_flags_before_the_command_line(bin_dir):
    out = recorded(
        run_entrypoint(
            bin_dir,
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "9000",
            QCODER_MODEL="Qwen/Qwen3-Coder-30B-A3B-Instruct",
            QCODER_PORT="8000",
            QCODER_MAX_NUM_SEQS="4",
            QCODER_MAX_MODEL_LEN="8192",
            QCODER_SERVED_MODEL_NAME="coder",
            QCODER_THREADS="",
        )
    )
    assert out["argv"] == [
        "serve",
        "--model",
        "Qwen/Qwen3-Coder-30B-A3B-Instruct",
        "--served-model-name",
        "coder",
        "--port",
        "8000",
        "--max-num-seqs",
        "4",
        "--max-model-len",
        "8192",
        # the command line comes last, so its --port 9000 wins (argparse keeps the last value)
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
    ]
    assert out["api_key"] is None


def test_api_key_file_is_read_into_the_environment_not_the_arguments(bin_dir, tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("  s3cret-key \r\nsecond line ignored\n")
    out = recorded(run_entrypoint(bin_dir, QCODER_API_KEY_FILE=str(key_file)))
    assert out["api_key"] == "s3cret-key"
    assert out["key_file"] is None
    assert not any("s3cret" in arg for arg in out["argv"])


def test_api_key_from_the_environment_passes_through(bin_dir):
    assert recorded(run_entrypoint(bin_dir, QCODER_API_KEY="k1"))["api_key"] == "k1"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"QCODER_API_KEY_FILE": "/nonexistent/key"}, "no such file: /nonexistent/key"),
        ({"QCODER_API_KEY_FILE": "EMPTY"}, "is empty"),
        ({"QCODER_API_KEY_FILE": "EMPTY", "QCODER_API_KEY": "k"}, "not both"),
        ({"QCODER_MODEL": "model; rm -rf /"}, "--model: unexpected characters"),
        ({"QCODER_PORT": "80 --api-key x"}, "--port: unexpected characters"),
    ],
)
def test_bad_environment_is_one_line_and_status_2(bin_dir, tmp_path, env, message):
    empty = tmp_path / "empty"
    empty.write_text("\n  \n")
    env = {k: (str(empty) if v == "EMPTY" else v) for k, v in env.items()}
    result = run_entrypoint(bin_dir, **env)
    assert result.returncode == 2
    assert result.stdout == ""  # qcoder was never started
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("qcoder-entrypoint: error: ")
    assert message in result.stderr


def test_unreadable_key_file(bin_dir, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    key_file = tmp_path / "api-key"
    key_file.write_text("k\n")
    key_file.chmod(0)
    result = run_entrypoint(bin_dir, QCODER_API_KEY_FILE=str(key_file))
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_pull_takes_the_model_from_the_environment(bin_dir):
    assert recorded(run_entrypoint(bin_dir, "pull", QCODER_MODEL="qwen2.5-coder-1.5b-instruct"))["argv"] == [
        "pull",
        "qwen2.5-coder-1.5b-instruct",
    ]
    out = recorded(run_entrypoint(bin_dir, "pull", "other-model", "--quiet", QCODER_MODEL="x"))
    assert out["argv"] == ["pull", "other-model", "--quiet"]  # a model on the command line wins


def test_pull_as_init_step_with_flags_only_keeps_the_model(bin_dir):
    """`pull --quiet` (what the chart's init container runs) must still pull $QCODER_MODEL."""
    out = recorded(run_entrypoint(bin_dir, "pull", "--quiet", QCODER_MODEL="qwen2.5-coder-1.5b-instruct"))
    assert out["argv"] == ["pull", "--quiet", "qwen2.5-coder-1.5b-instruct"]


def test_other_commands_pass_through_untouched(bin_dir):
    out = recorded(run_entrypoint(bin_dir, "models", "--json", QCODER_MODEL="ignored", QCODER_API_KEY_FILE=""))
    assert out["argv"] == ["models", "--json"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_flags_reach_the_real_cli(tmp_path):
    """The real `qcoder serve` gets the flags: a bad value from the environment is its own one-line error."""
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "qcoder"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m qcoder "$@"\n')
    wrapper.chmod(0o755)
    env = {
        "PATH": f"{folder}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO / "src"),
        "QCODER_MAX_NUM_SEQS": "0",
    }
    result = subprocess.run(["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "qcoder: error: --max-num-seqs must be a positive number, got 0"
