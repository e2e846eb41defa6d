"""`qcoder generate` and `qcoder chat` as real subprocesses on a tiny model."""

import subprocess
import sys

import pytest

from qcoder.engine.llm import LLM
from qcoder.engine.sampling import SamplingParams


def qcoder(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "qcoder", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def llm(tiny_qwen2):
    return LLM(str(tiny_qwen2), max_model_len=256, kv_cache_tokens=1024)


def test_generate_prints_the_greedy_completion(tiny_qwen2, llm):
    expected = llm.generate("def add(a, b):", SamplingParams(temperature=0, max_tokens=8))[0].text
    result = qcoder(
        "generate", "--model", str(tiny_qwen2), "--prompt", "def add(a, b):", "--max-tokens", "8", "--temperature", "0"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"
    streamed = qcoder(
        "generate",
        "-m",
        str(tiny_qwen2),
        "-p",
        "-",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--stream",
        stdin="def add(a, b):",
    )
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == expected + "\n"


def test_generate_chat_applies_the_template(tiny_qwen2, llm):
    ids = llm.chat_prompt_ids([{"role": "user", "content": "hi"}])
    expected = llm.generate([ids], SamplingParams(temperature=0, max_tokens=6))[0].text
    result = qcoder("generate", "-m", str(tiny_qwen2), "-p", "hi", "--chat", "--max-tokens", "6", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"


def test_user_errors_are_one_line(tiny_qwen2, tmp_path):
    result = qcoder("generate", "-m", str(tmp_path / "missing"), "-p", "x")
    assert result.returncode == 2
    assert result.stderr.startswith("qcoder: error:") and len(result.stderr.strip().splitlines()) == 1
    result = qcoder("generate", "-m", str(tiny_qwen2), "-p", "x", "--temperature", "-1")
    assert result.returncode == 2 and "temperature" in result.stderr and "Traceback" not in result.stderr


def test_chat_repl_keeps_history_and_clears_it(tiny_qwen2):
    result = qcoder(
        "chat",
        "-m",
        str(tiny_qwen2),
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        stdin="hello\nhello\n/clear\nhello\n/quit\n",
    )
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.split(">>> ") if line.strip()]
    assert answers[2].strip() == "(conversation cleared)"
    # The same first message gives the same answer after /clear; the second turn saw history and differs.
    assert answers[0] == answers[3]
    assert answers[1] != answers[0]
