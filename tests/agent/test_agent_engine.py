"""The agent on the built-in engine (in process) with a tiny random model: the protocol, not task success."""

import json

import pytest

from tests.conftest import QWEN25_TOKENIZER, QWEN25_TOKENIZER_FILES, REAL_VOCAB, tiny_checkpoint

from .conftest import json_result, qcoder_cli

TOKENIZER = QWEN25_TOKENIZER


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    if not TOKENIZER.is_dir():
        pytest.skip(f"needs the shared Qwen2.5 tokenizer at {TOKENIZER}")
    pytest.importorskip("transformers")
    directory = tmp_path_factory.mktemp("tiny-agent-model")
    tiny_checkpoint("qwen2", directory, tokenizer_files=QWEN25_TOKENIZER_FILES, vocab_size=REAL_VOCAB, hidden_size=32,
                    intermediate_size=64, num_hidden_layers=2, max_position_embeddings=8192, initializer_range=0.02)
    return directory


def test_agent_runs_on_the_builtin_engine(tiny_model, workspace, home):
    (workspace / "hello.py").write_text("print('hi')\n")
    (workspace / ".qcoder").mkdir()
    (workspace / ".qcoder" / "settings.toml").write_text("[sampling]\nmax_tokens = 12\ntemperature = 0.0\n")
    proc = qcoder_cli(["-p", "Say hello", "--trust", "--model", str(tiny_model), "--max-turns", "2",
                       "--output-format", "json"],
                      workspace, home=home, timeout=300)
    result = json_result(proc)
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert result["status"] in ("success", "limit", "failure") and 1 <= result["turns"] <= 2
    assert result["tokens"]["prompt_tokens"] > 100 and 0 < result["tokens"]["completion_tokens"] <= 24
    records = [json.loads(line) for line in
               (workspace / ".qcoder" / "sessions" / f"{result['session_id']}.jsonl").read_text().splitlines()]
    roles = [r["message"]["role"] for r in records if r["type"] == "message"]
    assert roles[:3] == ["system", "user", "assistant"]
