"""`qcoder serve` as a user runs it: a subprocess, its startup line, QCODER_API_KEY, and a clean drain on signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(model_dir, *args, env=None) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qcoder",
            "serve",
            "--model",
            str(model_dir),
            "--port",
            str(port),
            "--max-model-len",
            "256",
            "--served-model-name",
            "tiny",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    line = process.stdout.readline()  # the startup line is printed once the port is bound and the model loaded
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return process, base, line
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"server did not come up: {line!r} {process.stderr.read()}")


def test_serve_with_env_key_drains_on_sigterm(tiny_model_dir):
    # a generous drain window: on a loaded CI machine 60 tokens may take longer than the default 5 s
    process, base, line = start(tiny_model_dir, "--drain-seconds", "60", env={"QCODER_API_KEY": "from-env"})
    try:
        assert f"{base}/v1" in line and "model=tiny" in line and "max_model_len=256" in line
        assert "auth=on" in line
        client = openai.OpenAI(base_url=base + "/v1", api_key="from-env", max_retries=0)
        assert httpx.get(base + "/v1/models").status_code == 401
        assert client.models.list().data[0].id == "tiny"

        stream = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=60,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        process.send_signal(signal.SIGTERM)  # the running request is allowed to finish
        rest = list(stream)
        assert rest[-1].choices[0].finish_reason == "length"
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_sigint_exits_cleanly(tiny_model_dir):
    process, base, _ = start(tiny_model_dir)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in process.stderr.read()


def test_busy_port_is_one_line_error(tiny_model_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "qcoder", "serve", "--model", str(tiny_model_dir), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.startswith("qcoder: error: cannot listen on 127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1
