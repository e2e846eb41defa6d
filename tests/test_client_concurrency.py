"""The in-process client is safe for concurrent callers: requests from many threads go into the engine's one
scheduler, batched, and give the same outputs as the same requests made one at a time."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from qcoder.client import EngineClient
from tests.conftest import QWEN25_TOKENIZER_FILES, REAL_VOCAB, tiny_checkpoint

SAMPLING = {"temperature": 0.0, "max_tokens": 24}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = tiny_checkpoint("qwen2", tmp_path_factory.mktemp("tiny-client"), tokenizer_files=QWEN25_TOKENIZER_FILES,
                           vocab_size=REAL_VOCAB)
    client = EngineClient(str(path))
    yield client
    client.close()


def ask(client, prompt, **extra):
    return client.chat([{"role": "user", "content": prompt}], **SAMPLING, **extra)


def test_concurrent_requests_from_many_threads_match_serial_ones(client):
    prompts = [f"Write function number {i} in Python." for i in range(8)]
    counters = client._llm.engine.counters
    before = counters["steps"]
    serial = [ask(client, p) for p in prompts]
    serial_steps, before = counters["steps"] - before, counters["steps"]
    with ThreadPoolExecutor(len(prompts)) as pool:
        parallel = list(pool.map(lambda p: ask(client, p), prompts))
    parallel_steps = counters["steps"] - before

    def outcome(r):
        return r.content, r.usage, r.finish_reason

    assert [outcome(r) for r in parallel] == [outcome(r) for r in serial]
    assert all(r.usage["completion_tokens"] > 0 for r in parallel)
    assert parallel_steps < serial_steps  # batched: one engine step advanced several requests


def test_streaming_callbacks_run_in_the_callers_thread(client):
    seen = []
    reply = ask(client, "hi", on_delta=lambda piece: seen.append((piece, threading.current_thread())))
    assert seen and reply.content in "".join(piece for piece, _ in seen)
    assert {thread for _, thread in seen} == {threading.current_thread()}
