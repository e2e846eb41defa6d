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


def test_a_silent_stream_gets_heartbeats_so_the_caller_can_give_up(client, monkeypatch):
    import time

    import qcoder.client as client_module

    monkeypatch.setattr(client_module, "HEARTBEAT_S", 0.05)

    class GiveUp(Exception):
        pass

    def on_delta(piece):
        if piece == "":  # a heartbeat: nothing came yet
            raise GiveUp

    client._loop.call_soon_threadsafe(time.sleep, 0.5)  # the engine's loop stalls, as in a long prefill
    with pytest.raises(GiveUp):
        ask(client, "hi", on_delta=on_delta)
    assert ask(client, "hi").content  # the request given up on did not wedge the engine


def test_forks_are_the_greedy_reply_and_replies_forced_off_it_at_its_closest_calls(client):
    messages = [{"role": "user", "content": "Rewrite the function."}]
    prefix = "```python\ndef f("
    greedy = client.sample(messages, 1, prefix=prefix, temperature=0.0, max_tokens=24)[0]
    replies = client.forks(messages, 4, prefix=prefix, max_tokens=24)
    assert len(replies) == 4 and replies[0].content == greedy.content
    forks = [r.content for r in replies[1:]]
    assert len(set(forks)) == 3 and greedy.content not in forks
    for fork in forks:  # each copies the greedy reply up to its fork point, then goes its own way
        assert fork.startswith(prefix)
        shared = next(i for i, (a, b) in enumerate(zip(fork + "\0", greedy.content + "\1", strict=False)) if a != b)
        assert shared >= len(prefix)
    # the next call goes on where this one stopped: the same replies as one call for all of them
    later = client.forks(messages, 3, prefix=prefix, max_tokens=24, start=4)
    assert [r.content for r in replies + later] == [r.content for r in client.forks(messages, 7, prefix=prefix,
                                                                                     max_tokens=24)]


def test_replies_unfinished_at_the_deadline_are_left_out_and_their_requests_aborted(client):
    import time

    messages = [{"role": "user", "content": "Write a long story."}]
    assert client.sample(messages, 3, temperature=0.8, max_tokens=400, deadline=time.monotonic()) == []
    assert client.forks(messages, 3, prefix="Once", max_tokens=400, deadline=time.monotonic()) == []
    soon = time.monotonic() + 0.3  # long enough to start decoding, far too short for 400 tokens
    assert client.sample(messages, 3, temperature=0.8, max_tokens=400, ignore_eos=True, deadline=soon) == []
    for _ in range(100):  # the aborted requests leave the engine (its loop notices the cancelled streams)
        if not client._llm.engine.has_unfinished():
            break
        time.sleep(0.05)
    assert not client._llm.engine.has_unfinished()
    later = time.monotonic() + 600
    replies = client.sample(messages, 2, temperature=0.8, max_tokens=8, deadline=later)
    assert len(replies) == 2 and all(r.usage["completion_tokens"] > 0 for r in replies)
    assert len(client.forks(messages, 2, prefix="Once", max_tokens=8, deadline=later)) == 2


def test_the_closest_calls_are_the_likeliest_runners_up_one_per_position_up_to_the_fence():
    from qcoder.client import _closest_calls

    pieces = ["a", "b", " b", "```", "c", "\n", "d", "bc"]

    def step(token, *runners_up):  # the greedy token heads the top list, as the sampler reports it
        return token, pieces[token], [(t, pieces[t], lp) for t, lp in [(token, -0.1), *runners_up]]

    steps = [step(0, (1, -2.0)),  # "a", runner-up "b"
             step(1, (7, -0.3), (2, -0.5), (4, -3.0)),  # "b": "bc" spells the same text, " b" differs only in
             #    whitespace, so "c"
             step(4, (6, -1.0)),  # "c", runner-up "d"
             step(3, (5, -0.2)),  # the closing fence, runner-up "\n": where the code could go on
             step(6, (0, -0.01))]  # past the fence: not code
    calls = [(at, runner_up[0]) for at, runner_up in _closest_calls(steps, 5)]
    assert calls == [(3, 5), (2, 6), (0, 1), (1, 4)]
    assert [(at, runner_up[0]) for at, runner_up in _closest_calls(steps, 2)] == [(3, 5), (2, 6)]

