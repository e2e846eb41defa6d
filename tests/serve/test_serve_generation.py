"""Generation through the server with the openai SDK: chat and completions, streaming, n, logprobs, stops,
seeds, batching invariance, prefix cache, disconnects, and a Qwen Code-shaped request."""

from __future__ import annotations

import concurrent.futures
import re
import time

import httpx
import pytest

from .conftest import LiveServer, make_state

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Write a haiku about code."}]


def metric(server, name: str) -> float:
    text = httpx.get(server.base_url + "/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def engine_stats(server) -> dict:
    return server.state.async_engine.stats()


def test_chat_completion(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 10
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_content_parts_equal_plain_text(client):
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Write a haiku"}, {"type": "text", "text": "about code."}],
        }
    ]
    plain = [{"role": "user", "content": "Write a haiku\nabout code."}]
    a = client.chat.completions.create(model="tiny", messages=parts, max_tokens=8, temperature=0)
    b = client.chat.completions.create(model="tiny", messages=plain, max_tokens=8, temperature=0)
    assert a.usage.prompt_tokens == b.usage.prompt_tokens
    assert a.choices[0].message.content == b.choices[0].message.content


def test_streaming_matches_whole_and_reports_usage(client):
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=16, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_sse_framing(tiny_server):
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", tiny_server.base_url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert '"usage"' not in "".join(events)  # not asked for


def test_n_choices(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, n=3, seed=5)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=6,
            n=3,
            seed=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = {i: "" for i in range(3)}
    for chunk in chunks:
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert [streamed[i] for i in range(3)] == [c.message.content for c in reply.choices]
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_seed_is_reproducible(client):
    def sample(seed):
        reply = client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=10, temperature=1.0, seed=seed
        )
        return reply.choices[0].message.content

    assert sample(1234) == sample(1234)
    assert len({sample(s) for s in range(6)}) > 1  # and the seed does change the output


def test_logprobs(client):
    reply = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert entry.logprob == max(t.logprob for t in entry.top_logprobs)  # greedy takes the top token
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token

    chunks = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3, stream=True
    )
    streamed = [
        entry
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content
    ]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]

    text = client.completions.create(model="tiny", prompt="def add(a, b):", max_tokens=4, temperature=0, logprobs=2)
    logprobs = text.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 4
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)
    assert logprobs.text_offset[0] == 0


def test_completions(client):
    reply = client.completions.create(model="tiny", prompt="def add(a, b):", max_tokens=7, temperature=0)
    assert reply.object == "text_completion" and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 7
    chunks = list(
        client.completions.create(
            model="tiny",
            prompt="def add(a, b):",
            max_tokens=7,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply.choices[0].text
    assert chunks[-1].usage.completion_tokens == 7

    batch = client.completions.create(
        model="tiny", prompt=["def add(a, b):", "import os"], max_tokens=3, temperature=0, n=2
    )
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert batch.choices[0].text == batch.choices[1].text  # greedy: both samples of prompt 0 agree
    assert batch.usage.completion_tokens == 12
    echoed = client.completions.create(model="tiny", prompt="def add(a, b):", max_tokens=7, temperature=0, echo=True)
    assert echoed.choices[0].text == "def add(a, b):" + reply.choices[0].text


def test_continue_final_message_goes_on_from_the_assistants_text(tiny_server, client):
    """vLLM's extra: the prompt ends inside the final assistant message (a forced beginning), exactly as a
    completion of the rendered conversation plus that text would."""
    begun = [*MESSAGES, {"role": "assistant", "content": "```python\ndef f("}]
    reply = client.chat.completions.create(model="tiny", messages=begun, max_tokens=8, temperature=0,
                                           extra_body={"continue_final_message": True, "add_generation_prompt": False})
    prompt = tiny_server.state.template.render(MESSAGES, add_generation_prompt=True) + "```python\ndef f("
    plain = client.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=0)
    assert reply.choices[0].message.content == plain.choices[0].text
    assert reply.usage.prompt_tokens == plain.usage.prompt_tokens

    import openai

    with pytest.raises(openai.BadRequestError, match="assistant message with text last"):
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2,
                                       extra_body={"continue_final_message": True})


def test_the_openai_client_forces_a_beginning_and_forks_on_qcoder_serve(tiny_server):
    """The repair path's `prefix` and forks through an endpoint: qcoder serve (and vLLM) continue a final assistant
    message, and report the runners-up the forks need."""
    from qcoder.client import OpenAIClient

    remote = OpenAIClient("tiny", tiny_server.base_url + "/v1")
    prefix = "```python\ndef f("
    sampled = remote.sample(MESSAGES, 3, prefix=prefix, temperature=1.0, max_tokens=6)
    assert len(sampled) == 3 and all(r.content.startswith(prefix) and len(r.content) > len(prefix) for r in sampled)
    forks = remote.forks(MESSAGES, 4, prefix=prefix, max_tokens=12)
    greedy = remote.sample(MESSAGES, 1, prefix=prefix, temperature=0, max_tokens=12)[0]
    assert len(forks) == 4 and forks[0].content == greedy.content
    assert len({r.content for r in forks}) == 4 and all(r.content.startswith(prefix) for r in forks)


def test_stop_strings(client):
    free = client.completions.create(model="tiny", prompt="def add(a, b):", max_tokens=12, temperature=0)
    text = free.choices[0].text
    stop = text[3:6]
    assert stop.strip(), f"pick a visible stop string from {text!r}"
    stopped = client.completions.create(
        model="tiny", prompt="def add(a, b):", max_tokens=12, temperature=0, stop=[stop]
    )
    assert stopped.choices[0].text == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_batching_does_not_change_results(client):
    prompts = [f"Question {i}: " + "please explain " * (i * 3) + "recursion." for i in range(8)]

    def ask(prompt):
        reply = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": prompt}], max_tokens=10, temperature=0
        )
        return reply.choices[0].message.content

    alone = [ask(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone


def test_prefix_cache_saves_prompt_compute(tiny_server, client):
    system = "You are a careful assistant. " * 20
    first = [{"role": "system", "content": system}, {"role": "user", "content": "first question"}]
    client.chat.completions.create(model="tiny", messages=first, max_tokens=2, temperature=0)
    computed = metric(tiny_server, "qcoder_engine_prompt_tokens_computed_total")
    cached = metric(tiny_server, "qcoder_prompt_tokens_cached_total")
    second = [{"role": "system", "content": system}, {"role": "user", "content": "second one"}]
    reply = client.chat.completions.create(model="tiny", messages=second, max_tokens=2, temperature=0)
    newly_computed = metric(tiny_server, "qcoder_engine_prompt_tokens_computed_total") - computed
    assert reply.usage.prompt_tokens_details.cached_tokens >= 16
    assert newly_computed <= reply.usage.prompt_tokens - 16
    assert metric(tiny_server, "qcoder_prompt_tokens_cached_total") - cached >= 16


def test_metrics_after_traffic(tiny_server, client):
    client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0)
    assert metric(tiny_server, "qcoder_generation_tokens_total") >= 4
    assert metric(tiny_server, "qcoder_time_to_first_token_seconds_count") >= 1
    assert metric(tiny_server, "qcoder_inter_token_latency_seconds_count") >= 3
    assert metric(tiny_server, "qcoder_num_requests_running") == 0
    assert (
        'qcoder_requests_total{endpoint="/v1/chat/completions",status="200"}'
        in httpx.get(tiny_server.base_url + "/metrics").text
    )


@pytest.fixture(scope="module")
def long_server(tiny_model_dir):
    """A server with an 8k window, for a request the size of Qwen Code's."""
    from qcoder.engine.engine import LLMEngine

    llm = LLMEngine(str(tiny_model_dir), max_model_len=8192, max_num_seqs=2, max_num_batched_tokens=1024)
    server = LiveServer(make_state(llm))
    yield server
    server.stop()


LONG_RUN = 4000  # tokens: far more than a test waits for, so only an abort can end these requests early


def wait_idle(server, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = engine_stats(server)
        if stats["running"] == 0 and stats["waiting"] == 0 and server.state.in_flight == 0:
            return stats
        time.sleep(0.05)
    return engine_stats(server)


def test_client_disconnect_frees_the_sequence(long_server):
    before = engine_stats(long_server)["generation_tokens"]
    stream = long_server.client().chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=LONG_RUN, stream=True, extra_body={"ignore_eos": True}
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    assert engine_stats(long_server)["running"] + engine_stats(long_server)["waiting"] == 1
    stream.close()
    stats = wait_idle(long_server)
    assert stats["running"] == 0 and stats["waiting"] == 0 and long_server.state.in_flight == 0
    assert stats["generation_tokens"] - before < LONG_RUN  # aborted, not run to the end


def test_non_streaming_disconnect_aborts(long_server):
    before = engine_stats(long_server)["generation_tokens"]
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": LONG_RUN, "ignore_eos": True}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(long_server.base_url + "/v1/chat/completions", json=body, timeout=1.0)
    stats = wait_idle(long_server)
    assert stats["running"] == 0 and long_server.state.in_flight == 0
    assert stats["generation_tokens"] - before < LONG_RUN
    assert metric(long_server, 'qcoder_requests_total{endpoint="/v1/chat/completions",status="499"}') == 1


def qwen_code_tools() -> list[dict]:
    tools = []
    for i in range(12):
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"tool_{i}",
                    "description": f"Tool number {i}. " * 5,
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string", "description": "a path"},
                            "limit": {"type": "integer"},
                        },
                        "required": ["path"],
                    },
                },
            }
        )
    tools.append({"type": "function", "function": {"name": "list_memories", "description": "no parameters"}})
    tools.append({"type": "function", "function": {"name": "exit_plan_mode", "description": "no parameters"}})
    return tools


def test_qwen_code_shaped_request_ends_with_length(long_server):
    """Qwen Code's first request: a 27,000-character system prompt, text parts, 14 tools (two without
    parameters), max_tokens 32768 (over the window), stream + include_usage: served, capped at what the
    window leaves, finish_reason "length". The second turn reuses the cached prefix."""
    state = long_server.state
    user = {
        "role": "user",
        "content": [
            {"type": "text", "text": "<context>This is the Qwen Code context.</context>"},
            {"type": "text", "text": "Fix the failing test."},
        ],
    }
    system = ("You are Qwen Code, an interactive CLI agent specializing in software engineering tasks. " * 300)[:27000]
    # Pad the system prompt so that the window leaves room for a few dozen tokens only (keeps the test fast).
    prompt_len = len(
        state.tokenizer.encode(
            state.template.render([{"role": "system", "content": system}, user], tools=qwen_code_tools())
        )
    )
    system += " x" * (state.max_model_len - prompt_len - 40)
    messages = [{"role": "system", "content": system}, user]

    client = long_server.client()
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=messages,
            tools=qwen_code_tools(),
            max_tokens=32768,
            temperature=0.7,
            top_p=0.8,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True, "top_k": 20},
        )
    )
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert finish == ["length"]
    assert usage.prompt_tokens + usage.completion_tokens == state.max_model_len
    assert 20 <= usage.completion_tokens <= 60

    second = messages + [{"role": "assistant", "content": "Looking."}, {"role": "user", "content": "Go on."}]
    reply = client.chat.completions.create(model="tiny", messages=second, tools=qwen_code_tools(), max_tokens=1)
    assert reply.usage.prompt_tokens_details.cached_tokens >= usage.prompt_tokens - 64
