import asyncio
import threading

import pytest

from qcoder.engine.async_engine import AsyncLLMEngine
from qcoder.engine.llm import LLM
from qcoder.engine.sampling import SamplingParams
from qcoder.errors import QcoderError

GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
PROMPTS = ["def add(a, b):", "hello", "class Stack:\n    def push(self, item):"]


@pytest.fixture(scope="module")
def llm(tiny_qwen2):
    return LLM(str(tiny_qwen2), max_model_len=256, kv_cache_tokens=2048)


@pytest.fixture
def aengine(llm):
    aengine = AsyncLLMEngine(llm.engine)
    yield aengine
    aengine.shutdown()


async def collect(aengine, rid, ids, params):
    outs = []
    async for out in aengine.generate(rid, ids, params):
        outs.append(out)
    return outs


async def wait_idle(aengine):
    while aengine.stats()["running"] or aengine.stats()["waiting"]:
        await asyncio.sleep(0.01)


def test_concurrent_streams_match_offline_generation(llm, aengine):
    expected = [o.token_ids for o in llm.generate(PROMPTS, GREEDY)]

    async def main():
        ids = [llm.tokenizer.encode(p) for p in PROMPTS]
        return await asyncio.gather(*(collect(aengine, f"r{i}", x, GREEDY) for i, x in enumerate(ids)))

    results = asyncio.run(main())
    for outs, want in zip(results, expected, strict=True):
        assert [t for o in outs for t in o.new_token_ids] == want
        assert outs[-1].finished and outs[-1].finish_reason == "length"
        assert not any(o.finished for o in outs[:-1])
        assert outs[-1].completion_tokens == len(want)


@pytest.fixture
def gate(llm, monkeypatch):
    """Each engine step waits for a permit, so a test decides how far generation may run."""
    permits = threading.Semaphore(1)
    step = llm.engine.step

    def gated_step():
        assert permits.acquire(timeout=30)
        return step()

    monkeypatch.setattr(llm.engine, "step", gated_step)
    return permits


def test_leaving_the_stream_aborts_and_frees_blocks(llm, aengine, gate):
    long = SamplingParams(temperature=0, max_tokens=100, ignore_eos=True)
    finished_before = llm.engine.counters["requests_finished"]

    async def main():
        received = 0
        async for _ in aengine.generate("long", llm.tokenizer.encode(PROMPTS[0]), long):
            received += 1
            if received == 3:
                break
            gate.release()
        gate.release(200)  # the abort is already in the inbox: at most one more step runs for it
        await wait_idle(aengine)
        return received

    assert asyncio.run(main()) == 3
    assert aengine.stats()["kv_usage"] == 0
    assert llm.engine.counters["requests_finished"] == finished_before  # aborted, not run to its end


def test_explicit_abort_ends_the_stream(llm, aengine, gate):
    long = SamplingParams(temperature=0, max_tokens=100, ignore_eos=True)

    async def main():
        outs = []
        async for out in aengine.generate("victim", llm.tokenizer.encode(PROMPTS[1]), long):
            outs.append(out)
            if len(outs) == 2:
                aengine.abort("victim")
            gate.release()
        gate.release(200)
        await wait_idle(aengine)
        return outs

    outs = asyncio.run(main())
    assert 2 <= len(outs) <= 3 and not outs[-1].finished
    assert aengine.stats()["kv_usage"] == 0


def test_errors_reach_the_caller(llm, aengine):
    async def too_long():
        async for _ in aengine.generate("x", list(range(300)), GREEDY):
            pass

    with pytest.raises(QcoderError, match="context window"):
        asyncio.run(too_long())

    async def duplicate():
        ids = llm.tokenizer.encode(PROMPTS[0])
        slow = SamplingParams(temperature=0, max_tokens=50, ignore_eos=True)
        first = asyncio.ensure_future(collect(aengine, "dup", ids, slow))
        await asyncio.sleep(0)
        while not aengine.stats()["running"]:
            await asyncio.sleep(0.01)
        try:
            await collect(aengine, "dup", ids, GREEDY)
        finally:
            await first

    with pytest.raises(QcoderError, match="already running"):
        asyncio.run(duplicate())


def test_shutdown_waits_for_the_step_in_progress(llm, monkeypatch):
    """A process must not exit while a step runs in torch's threads (it aborts), however long the step takes."""
    import time

    stepping = threading.Event()
    step = llm.engine.step

    def slow_step():
        stepping.set()
        time.sleep(1.0)  # a long prefill chunk on a slow CPU
        return step()

    monkeypatch.setattr(llm.engine, "step", slow_step)
    aengine = AsyncLLMEngine(llm.engine)

    async def start():
        stream = aengine.generate("slow", llm.tokenizer.encode(PROMPTS[0]), GREEDY)
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        return task

    loop = asyncio.new_event_loop()
    first = loop.run_until_complete(start())
    assert stepping.wait(10)
    began = time.monotonic()
    aengine.shutdown()
    assert not aengine._thread.is_alive() and time.monotonic() - began > 0.5
    loop.run_until_complete(asyncio.wait([first], timeout=10))  # the step's output, or the shut-down error
    first.exception() if first.done() and not first.cancelled() else first.cancel()
    loop.close()
