import json

import pytest
import torch

from qcoder.engine.llm import LLM
from qcoder.engine.sampling import SamplingParams
from qcoder.errors import QcoderError

from .conftest import scripted_llm

GREEDY = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
PROMPTS = [
    "def fibonacci(n):",
    "x",
    "import numpy as np\n\nclass Matrix:\n    def __init__(self, rows, cols):\n        self.rows = rows\n",
    "The quick brown fox jumps over the lazy dog. " * 4,
    "<|im_start|>user\nWrite a haiku<|im_end|>\n<|im_start|>assistant\n",
    "fn main() {",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,",
    "SELECT * FROM",
]


def make_llm(path, **opts):
    opts = {"max_model_len": 512, "kv_cache_tokens": 4096, **opts}
    return LLM(str(path), **opts)


@pytest.fixture(scope="module")
def llm(tiny_qwen2):
    return make_llm(tiny_qwen2)


@pytest.fixture(scope="module")
def one_at_a_time(llm):
    """Greedy reference: each prompt generated alone."""
    return [llm.generate(p, GREEDY)[0].token_ids for p in PROMPTS]


def test_greedy_batch_matches_hf_generate(llm, hf_qwen2):
    prompts = PROMPTS[:4]
    outputs = llm.generate(prompts, GREEDY)
    for prompt, out in zip(prompts, outputs, strict=True):
        ids = llm.tokenizer.encode(prompt)
        ref = hf_qwen2.generate(
            torch.tensor([ids]), max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0
        )
        assert out.token_ids == ref[0, len(ids) :].tolist()
        assert out.finish_reason == "length"
        assert out.text == llm.tokenizer.decode(out.token_ids, skip_special_tokens=True)


def test_batching_is_invariant(llm, one_at_a_time):
    outputs = llm.generate(PROMPTS, GREEDY)
    assert [o.token_ids for o in outputs] == one_at_a_time


def test_chunked_prefill_gives_the_same_tokens(tiny_qwen2, one_at_a_time):
    llm = make_llm(tiny_qwen2, max_num_seqs=4, max_num_batched_tokens=8)
    outputs = llm.generate(PROMPTS, GREEDY)
    assert [o.token_ids for o in outputs] == one_at_a_time
    # The longest prompt cannot have been computed in one step.
    assert max(len(llm.tokenizer.encode(p)) for p in PROMPTS) > 8


def test_prefix_cache_skips_shared_blocks_and_keeps_output(tiny_qwen2):
    prefix = "You are a helpful coding assistant. Answer briefly and precisely. " * 3
    a, b = prefix + "Question one?", prefix + "Second question, different."
    llm = make_llm(tiny_qwen2)
    llm.generate(a, GREEDY)
    before = llm.engine.stats()
    out_b = llm.generate(b, GREEDY)[0]
    after = llm.engine.stats()
    b_len = len(llm.tokenizer.encode(b))
    cached = after["prompt_tokens_cached"] - before["prompt_tokens_cached"]
    computed = after["prompt_tokens_computed"] - before["prompt_tokens_computed"]
    assert cached >= 32 and cached % 16 == 0
    assert computed == b_len - cached
    fresh = make_llm(tiny_qwen2, enable_prefix_caching=False)
    assert fresh.generate(b, GREEDY)[0].token_ids == out_b.token_ids
    assert fresh.engine.stats()["prompt_tokens_cached"] == 0


def test_samples_of_one_prompt_sent_together_compute_it_once(tiny_qwen2):
    prompt = "You are a helpful coding assistant. Rewrite the function below with the bug fixed. " * 3
    llm = make_llm(tiny_qwen2)
    length = len(llm.tokenizer.encode(prompt))
    outputs = llm.generate([prompt] * 4, GREEDY)
    stats = llm.engine.stats()
    assert stats["prompt_tokens_computed"] + stats["prompt_tokens_cached"] == 4 * length
    assert stats["prompt_tokens_computed"] < length + 3 * 16  # the others computed at most their last block
    assert len({tuple(o.token_ids) for o in outputs}) == 1
    fresh = make_llm(tiny_qwen2, enable_prefix_caching=False)
    assert fresh.generate(prompt, GREEDY)[0].token_ids == outputs[0].token_ids


def test_preemption_under_a_tiny_cache_keeps_greedy_output(tiny_qwen2, one_at_a_time):
    # 8 blocks of 16 tokens for 8 sequences that each grow past 2 blocks.
    llm = make_llm(tiny_qwen2, max_model_len=96, kv_cache_tokens=128)
    prompts = [p for p in PROMPTS if len(llm.tokenizer.encode(p)) <= 40]
    outputs = llm.generate(prompts, GREEDY)
    expected = [ref for p, ref in zip(PROMPTS, one_at_a_time, strict=True) if p in prompts]
    assert [o.token_ids for o in outputs] == expected
    assert llm.engine.stats()["preemptions"] > 0
    assert llm.engine.stats()["kv_usage"] == 0.0


def test_stop_strings_are_cut_and_never_streamed(llm, one_at_a_time):
    from qcoder.engine.tokenizer import IncrementalDecoder

    decoder = IncrementalDecoder(llm.tokenizer, skip_special_tokens=True)
    pieces = [decoder.add(t) for t in one_at_a_time[0]]
    ref = "".join(pieces)
    # A stop string that spans two tokens, so a stream without hold-back would leak its first half.
    k = next(
        k
        for k in range(3, len(pieces) - 1)
        if len(pieces[k]) >= 2
        and len(pieces[k + 1]) >= 2
        and pieces[k][-2:].strip()
        and ref.find(pieces[k][-2:] + pieces[k + 1][:2]) == len("".join(pieces[: k + 1])) - 2
    )
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    cut = ref.find(stop)
    params = SamplingParams(temperature=0, max_tokens=32, stop=["never-appears", stop])
    out = llm.generate(PROMPTS[0], params)[0]
    assert out.text == ref[:cut]
    assert out.finish_reason == "stop" and len(out.token_ids) == k + 2
    deltas = list(llm.stream(PROMPTS[0], params))
    assert "".join(deltas) == ref[:cut]


def test_stop_token_ids_and_eos(llm, one_at_a_time):
    ref = one_at_a_time[0]
    stop_id = ref[5]
    out = llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=32, stop_token_ids=[stop_id]))[0]
    assert out.token_ids == ref[: ref.index(stop_id) + 1]
    assert out.finish_reason == "stop"
    assert out.text == llm.tokenizer.decode(ref[: ref.index(stop_id)], skip_special_tokens=True)
    # Declaring that token an eos token of the checkpoint has the same effect, unless ignore_eos.
    llm.engine.eos_token_ids.add(stop_id)
    try:
        assert llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=32))[0].token_ids == out.token_ids
        assert llm.generate(PROMPTS[0], GREEDY)[0].token_ids == ref
    finally:
        llm.engine.eos_token_ids.discard(stop_id)


def test_max_tokens_and_context_window(tiny_qwen2):
    llm = make_llm(tiny_qwen2, max_model_len=64)
    ids = list(range(1000, 1050))
    out = llm.generate([ids], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))[0]
    assert len(out.token_ids) == 5 and out.finish_reason == "length"
    out = llm.generate([ids], SamplingParams(temperature=0, max_tokens=100, ignore_eos=True))[0]
    assert len(out.token_ids) == 14 and out.finish_reason == "length"
    with pytest.raises(QcoderError, match="context window is 64"):
        llm.generate([list(range(1000, 1064))], GREEDY)
    with pytest.raises(QcoderError, match="max_model_len"):
        make_llm(tiny_qwen2, max_model_len=4096, kv_cache_tokens=1024)


def test_seeds_are_reproducible_and_independent_of_neighbours(llm):
    seeded = SamplingParams(temperature=1.0, max_tokens=16, seed=1234, ignore_eos=True)
    alone = llm.generate(PROMPTS[1], seeded)[0].token_ids
    assert llm.generate(PROMPTS[1], seeded)[0].token_ids == alone
    engine = llm.engine
    engine.add_request("n1", llm.tokenizer.encode(PROMPTS[0]), SamplingParams(temperature=1.0, max_tokens=16))
    engine.add_request("me", llm.tokenizer.encode(PROMPTS[1]), seeded)
    engine.add_request("n2", llm.tokenizer.encode(PROMPTS[2]), SamplingParams(temperature=0.5, seed=9, max_tokens=8))
    mine = []
    while engine.has_unfinished():
        mine += [t for out in engine.step() if out.request_id == "me" for t in out.new_token_ids]
    assert mine == alone
    other_seed = SamplingParams(temperature=1.0, max_tokens=16, seed=4321, ignore_eos=True)
    assert llm.generate(PROMPTS[1], other_seed)[0].token_ids != alone


def test_penalties_change_greedy_choices(llm, one_at_a_time):
    # A repeated token under greedy decoding becomes impossible with a strong presence penalty.
    ref = one_at_a_time[6]
    assert len(set(ref)) < len(ref)
    out = llm.generate(PROMPTS[6], SamplingParams(temperature=0, max_tokens=32, presence_penalty=2.0, ignore_eos=True))[
        0
    ]
    assert out.token_ids != ref


def test_logprobs_describe_the_greedy_choice(llm, one_at_a_time):
    engine = llm.engine
    engine.add_request("lp", llm.tokenizer.encode(PROMPTS[0]), SamplingParams(temperature=0, max_tokens=4, logprobs=3))
    outs = []
    while engine.has_unfinished():
        outs += engine.step()
    assert [o.new_token_ids[0] for o in outs] == one_at_a_time[0][:4]
    for out in outs:
        [(logprob, top)] = out.logprobs
        assert len(top) == 3 and top[0][0] == out.new_token_ids[0] and top[0][1] == pytest.approx(logprob)
        assert logprob <= 0


def test_abort_frees_blocks_at_once(llm):
    engine = llm.engine
    engine.add_request("a", llm.tokenizer.encode(PROMPTS[2]), GREEDY)
    engine.add_request("b", llm.tokenizer.encode(PROMPTS[3]), GREEDY)
    engine.step()
    usage_both = engine.stats()["kv_usage"]
    assert engine.abort("a")
    assert 0 < engine.stats()["kv_usage"] < usage_both
    assert not engine.abort("a")
    engine.abort("b")
    assert engine.stats()["kv_usage"] == 0 and not engine.has_unfinished()
    with pytest.raises(QcoderError, match="empty"):
        engine.add_request("c", [], GREEDY)


def test_thinking_budget_forces_the_end_of_thinking(tiny_qwen3):
    llm = make_llm(tiny_qwen3)
    tok = llm.tokenizer
    prompt = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert llm.engine.opens_thinking(prompt)
    close = tok.encode("\n</think>\n\n")
    assert tok.token_to_id("</think>") in close
    free = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))[0]
    assert tok.token_to_id("</think>") not in free.token_ids  # the random model never closes by itself
    budget = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=20, ignore_eos=True, thinking_budget=5))[0]
    assert budget.token_ids[:5] == free.token_ids[:5]
    assert budget.token_ids[5 : 5 + len(close)] == close
    assert "\n</think>\n\n" in budget.text
    zero = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, thinking_budget=0))[0]
    assert zero.token_ids[: len(close)] == close
    # Without an open <think> in the prompt nothing is forced.
    plain = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert not llm.engine.opens_thinking(plain)
    out = llm.generate([plain], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, thinking_budget=0))[0]
    assert tok.token_to_id("</think>") not in out.token_ids


def test_engine_from_parts_runs_a_scripted_model(tiny_qwen2):
    llm = scripted_llm(tiny_qwen2, "Hello from a script!<|im_end|>never reached")
    out = llm.generate("say hello", SamplingParams(temperature=0, max_tokens=50))[0]
    assert out.text == "Hello from a script!" and out.finish_reason == "stop"


def test_chat_splits_reasoning_and_parses_tool_calls(tiny_qwen2):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    call = '<think>I should call the tool.</think>Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    llm = scripted_llm(tiny_qwen2, call)
    out = llm.chat(messages, tools=tools, params=SamplingParams(temperature=0))
    assert out.reasoning_content == "I should call the tool."
    assert out.content.strip() == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in out.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert out.finish_reason == "tool_calls"
    assert out.prompt_tokens == len(llm.chat_prompt_ids(messages, tools)) and out.completion_tokens > 10

    plain = scripted_llm(tiny_qwen2, "Sunny, 21 C.<|im_end|>").chat(messages, params=SamplingParams(temperature=0))
    assert (plain.content, plain.reasoning_content, plain.tool_calls, plain.finish_reason) == (
        "Sunny, 21 C.",
        None,
        [],
        "stop",
    )


def test_random_workload_matches_isolated_runs_and_leaks_no_blocks(tiny_qwen2, llm):
    """Arrivals, aborts, shared prefixes, a tiny cache (preemption) and a tiny budget (chunking), all at once."""
    import random

    rng = random.Random(0)
    engine = make_llm(
        tiny_qwen2, max_model_len=96, kv_cache_tokens=96, max_num_seqs=5, max_num_batched_tokens=20
    ).engine
    shared = list(range(2000, 2048))
    requests, outputs, aborted = {}, {}, set()
    for step in range(300):
        if len(requests) < 24 and rng.random() < 0.25:
            rid = f"r{len(requests)}"
            prompt = shared[: rng.choice([0, 16, 32])] + [rng.randrange(150000) for _ in range(rng.randint(1, 24))]
            seeded = rng.random() < 0.5
            params = SamplingParams(
                temperature=0.9 if seeded else 0,
                top_k=rng.choice([0, 8]),
                seed=7 if seeded else None,
                max_tokens=rng.randint(1, 24),
                ignore_eos=True,
            )
            requests[rid] = (prompt, params)
            outputs[rid] = []
            engine.add_request(rid, prompt, params)
        if step % 37 == 36 and engine.scheduler.running:
            victim = engine.scheduler.running[0].request_id
            engine.abort(victim)
            aborted.add(victim)
        for out in engine.step():
            outputs[out.request_id] += out.new_token_ids
    while engine.has_unfinished():
        for out in engine.step():
            outputs[out.request_id] += out.new_token_ids

    stats = engine.stats()
    assert stats["preemptions"] > 0 and stats["prompt_tokens_cached"] > 0 and aborted
    blocks = engine.block_manager
    assert blocks.num_free_blocks == blocks.num_blocks and not any(blocks.ref_counts)
    for rid, (prompt, params) in requests.items():
        if rid not in aborted:
            assert outputs[rid] == llm.generate([prompt], params)[0].token_ids, rid
