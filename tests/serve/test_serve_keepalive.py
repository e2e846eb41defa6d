"""Streams stay visibly alive while a prompt is in prefill: empty-delta chunks, through the official openai SDK.

The model's prefill is held back for real: every forward that carries a prompt chunk waits until the test has
seen a keepalive chunk on the wire (or a minute has passed). So the first token cannot come before a keepalive,
whatever the machine's speed, and a server that sent none would leave the test with nothing to count.
"""

from __future__ import annotations

import threading

import pytest
import torch

from tests.serve.conftest import LiveServer, make_state

GATE_TIMEOUT_S = 60
MESSAGES = [{"role": "user", "content": "Write a function that adds two numbers. " * 8}]


class PrefillGate(torch.nn.Module):
    """The engine's model, whose prompt chunks (forwards with more than one new token) wait for `opened`."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.opened = threading.Event()
        self.waited = 0  # prompt chunks that had to wait

    def forward(self, batch, kv_caches):
        if max(batch.query_lens) > 1 and not self.opened.is_set():
            self.waited += 1
            self.opened.wait(GATE_TIMEOUT_S)
        return self.model(batch, kv_caches)


@pytest.fixture(scope="module")
def gated(tiny_model_dir):
    from qcoder.engine.engine import LLMEngine

    llm = LLMEngine(str(tiny_model_dir), max_model_len=512, max_num_seqs=4, max_num_batched_tokens=32)
    gate = PrefillGate(llm.model)
    llm.model = gate
    server = LiveServer(make_state(llm, stream_keepalive_s=0.05))
    yield server, gate
    server.stop()


def test_chat_stream_sends_keepalives_before_the_first_token(gated):
    server, gate = gated
    client = server.client()
    gate.opened.set()  # the reference answer runs ungated
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0)
    gate.opened.clear()

    kinds = []  # per chunk: "role", "keepalive", "content" or "finish"
    text = ""
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0, stream=True)
    for chunk in stream:
        choice = chunk.choices[0]
        delta = choice.delta
        if delta.role == "assistant":
            kinds.append("role")
        elif choice.finish_reason:
            kinds.append("finish")
        elif delta.content:
            kinds.append("content")
            text += delta.content
        else:
            assert delta.model_dump(exclude_none=True) == {} and choice.index == 0
            kinds.append("keepalive")
            gate.opened.set()  # one seen: let the prompt through
    assert gate.waited >= 1
    assert kinds[0] == "role" and kinds[-1] == "finish"
    first_token = kinds.index("content")
    assert "keepalive" in kinds[1:first_token]
    assert text == whole.choices[0].message.content


def test_completion_stream_sends_empty_text_chunks_while_waiting(gated):
    server, gate = gated
    client = server.client()
    prompt = "def add(a, b):\n    " * 10
    gate.opened.set()
    whole = client.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=0)
    gate.opened.clear()

    texts = []
    for chunk in client.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=0, stream=True):
        texts.append(chunk.choices[0].text)
        if chunk.choices[0].text == "" and chunk.choices[0].finish_reason is None:
            gate.opened.set()
    assert texts[0] == ""  # nothing could be generated before a keepalive let the prompt through
    assert "".join(texts) == whole.choices[0].text


def test_keepalive_off_sends_nothing_extra(tiny_model_dir):
    from qcoder.engine.engine import LLMEngine

    llm = LLMEngine(str(tiny_model_dir), max_model_len=512, max_num_seqs=2, max_num_batched_tokens=32)
    server = LiveServer(make_state(llm, stream_keepalive_s=0))
    try:
        chunks = list(
            server.client().chat.completions.create(
                model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, stream=True
            )
        )
    finally:
        server.stop()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.content or c.choices[0].finish_reason for c in chunks[1:])


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_cli_refuses_a_bad_interval(value):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "qcoder", "serve", "--stream-keepalive-s", value, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"qcoder: error: --stream-keepalive-s must be 0 (off) or a number of seconds, got {float(value)}"
