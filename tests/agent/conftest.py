import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_openai import FakeModel

EXAMPLE = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def fake_model():
    model = FakeModel()
    yield model
    model.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty user settings directory, so the developer's ~/.qcoder never leaks into a test."""
    path = tmp_path / "qcoder-home"
    path.mkdir()
    monkeypatch.setenv("QCODER_CONFIG", str(path))
    return path


@pytest.fixture
def workspace(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    return path


def qcoder_cli(args, workspace, fake_model=None, home=None, stdin=None, timeout=120, env=None):
    """Run the real `qcoder` CLI in a subprocess against the fake model."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "QCODER_"))}
    if fake_model is not None:
        full_env.update(OPENAI_BASE_URL=fake_model.url, OPENAI_API_KEY="sk-test", OPENAI_MODEL="fake")
    if home is not None:
        full_env["QCODER_CONFIG"] = str(home)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "qcoder", *args], cwd=workspace, env=full_env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def json_result(proc) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
