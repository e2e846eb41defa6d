import importlib
import subprocess
import sys

import pytest

import client
import health
import settings


def test_new_name():
    assert settings.MAX_RETRIES == 3
    assert not hasattr(settings, "MAX_RETRY")


def test_client_retries(monkeypatch):
    monkeypatch.setattr(settings, "MAX_RETRIES", 2)
    calls = []

    def flaky(request):
        calls.append(request)
        raise ConnectionError("down")

    c = client.Client(flaky)
    with pytest.raises(ConnectionError):
        c.call("ping")
    assert c.attempts == 3


def test_health_reports_it():
    importlib.reload(health)
    assert health.health()["max_retries"] == 3


def test_environment_override(monkeypatch):
    code = "import settings; print(settings.MAX_RETRIES)"
    env = {"APP_MAX_RETRIES": "7", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=settings.__file__.rsplit("/", 1)[0])
    assert out.stdout.strip() == "7", out.stderr
