"""Speculative decoding: the n-gram drafter, and that verification keeps greedy output token-identical and
sampled output exactly distributed."""

import pytest
import torch

from qcoder.engine.sampling import SamplingParams
from qcoder.engine.speculative import NgramDrafter, accept
from qcoder.errors import QcoderError

from .test_engine import GREEDY, PROMPTS, make_llm

# A prompt that repeats itself: the tiny model's greedy output, fed back, is often drafted right.
ECHO = "for i in range(10):\n    total += values[i] * weights[i]\n" * 3


@pytest.fixture(scope="module")
def llm(tiny_qwen2):
    return make_llm(tiny_qwen2)


@pytest.fixture(scope="module")
def spec_llm(tiny_qwen2):
    return make_llm(tiny_qwen2, speculative="ngram")


@pytest.fixture(scope="module")
def one_at_a_time(llm):
    return [llm.generate(p, GREEDY)[0].token_ids for p in PROMPTS]


# ----- the drafter -----


def test_drafter_proposes_what_followed_the_latest_longest_match():
    drafter = NgramDrafter(k=3, min_n=1)
    #        0  1  2  3  4  5  6  7  8  9
    tokens = [5, 6, 7, 8, 9, 1, 6, 7, 2, 6]
    assert drafter.propose(tokens) == [7, 2, 6]  # 1-gram [6]: its latest earlier occurrence is at 6
    tokens += [7]
    assert drafter.propose(tokens) == [2, 6, 7]  # 2-gram [6, 7] latest at 6..7, followed by 2
    tokens[:] = [1, 2, 3, 9, 2, 3, 8, 1, 2, 3]
    assert NgramDrafter(k=2, min_n=1).propose(tokens) == [9, 2]  # the 3-gram [1, 2, 3] beats the later 2-gram [2, 3]


def test_drafter_limits_and_misses():
    drafter = NgramDrafter(k=4, min_n=1)
    tokens = [1, 2, 3, 4, 5, 1]
    assert drafter.propose(tokens, limit=2) == [2, 3]
    assert drafter.propose(tokens, limit=0) == []
    assert drafter.propose([1, 2, 3]) == []  # a suffix seen nowhere before: no draft, and never itself
    assert NgramDrafter(k=4, min_n=1).propose([7]) == []
    assert NgramDrafter(k=8).propose([1, 2, 3, 1]) == []  # by default a single matching token drafts nothing
    assert NgramDrafter(k=8).propose([1, 2, 3, 1, 2]) == [3, 1, 2]
    with pytest.raises(QcoderError):
        NgramDrafter(k=0)


def test_drafter_index_grows_with_the_list_and_matches_a_rescan():
    import random

    rng = random.Random(1)
    tokens: list[int] = []
    drafter = NgramDrafter(k=5, max_n=3, min_n=1)
    for _ in range(300):
        tokens.append(rng.randrange(6))
        fresh = NgramDrafter(k=5, max_n=3, min_n=1)  # built from scratch on the whole list
        assert drafter.propose(tokens) == fresh.propose(tokens)
        # the brute-force answer: latest earlier occurrence of the longest suffix that has one
        expected = []
        for n in (3, 2, 1):
            starts = [j for j in range(n, len(tokens)) if tokens[j - n : j] == tokens[len(tokens) - n :]]
            if len(tokens) > n and starts:
                expected = tokens[max(starts) : max(starts) + 5]
                break
        assert drafter.propose(tokens) == expected


# ----- acceptance rule -----


def test_accept_rule_for_one_hot_targets_is_the_greedy_match():
    vocab = 6
    probs = torch.zeros(4, vocab)
    probs[0, 2] = probs[1, 3] = probs[2, 5] = probs[3, 1] = 1.0
    assert accept(probs, [2, 3, 5], None) == [2, 3, 5, 1]  # all accepted, plus the token after
    assert accept(probs, [2, 4, 5], None) == [2, 3]  # first mismatch replaced by the target's token
    assert accept(probs, [0, 3, 5], None) == [2]


def test_accept_rule_keeps_the_target_distribution():
    """With p = (0.5, 0.3, 0.2) and the draft always token 1: P(accept) = 0.3 and rejections draw from (5/7, 0, 2/7),
    so the emitted token must be distributed as p."""
    p = torch.tensor([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]])
    gen = torch.Generator().manual_seed(0)
    n = 4000
    counts = torch.zeros(3)
    for _ in range(n):
        counts[accept(p, [1], gen)[0]] += 1
    assert _chi_square(counts, p[0] * n) < 13.8  # df 2, p = 0.001


def _chi_square(observed: torch.Tensor, expected: torch.Tensor) -> float:
    keep = expected > 0
    assert float(observed[~keep].sum()) == 0, "a token with probability 0 came out"
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())


# ----- greedy identity in the engine -----


def test_greedy_output_is_token_identical_with_speculation(llm, spec_llm, one_at_a_time):
    engine = spec_llm.engine
    before = dict(engine.counters)
    outputs = spec_llm.generate(PROMPTS + [ECHO], GREEDY)  # one batch: drafting and non-drafting rows mixed
    assert [o.token_ids for o in outputs[:-1]] == one_at_a_time
    assert outputs[-1].token_ids == llm.generate(ECHO, GREEDY)[0].token_ids
    drafted = engine.counters["draft_tokens"] - before["draft_tokens"]
    accepted = engine.counters["draft_tokens_accepted"] - before["draft_tokens_accepted"]
    assert drafted > 0 and accepted > 0  # verification ran and took drafted tokens: several tokens in a step
    blocks = engine.block_manager
    assert blocks.num_free_blocks == blocks.num_blocks


@pytest.mark.parametrize(
    "params",
    [
        dict(repetition_penalty=1.3),
        dict(presence_penalty=0.8, frequency_penalty=0.6),
        dict(logprobs=3),
    ],
    ids=["repetition", "presence-frequency", "logprobs"],
)
def test_greedy_identity_holds_with_penalties_and_logprobs(llm, spec_llm, params):
    """The penalties at a drafted position must count the drafted tokens before it."""
    greedy = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, **params)
    prompts = [ECHO, PROMPTS[3], PROMPTS[6]]
    expected = [llm.engine, spec_llm.engine]
    plain, spec = (_run(engine, prompts, greedy) for engine in expected)
    assert [tokens for tokens, _ in spec] == [tokens for tokens, _ in plain]
    if params.get("logprobs"):
        for (_, lp_spec), (_, lp_plain) in zip(spec, plain, strict=True):
            assert len(lp_spec) == len(lp_plain) == 40
            for (value_s, top_s), (value_p, top_p) in zip(lp_spec, lp_plain, strict=True):
                assert value_s == pytest.approx(value_p, abs=1e-4)
                assert [t for t, _ in top_s] == [t for t, _ in top_p]


def _run(engine, prompts, params):
    """(tokens, logprobs) per prompt, every request added at once and stepped to the end."""
    ids = {f"p{i}": engine.tokenizer.encode(p) for i, p in enumerate(prompts)}
    out = {rid: ([], []) for rid in ids}
    for rid, prompt in ids.items():
        engine.add_request(rid, prompt, params)
    while engine.has_unfinished():
        for step in engine.step():
            out[step.request_id][0].extend(step.new_token_ids)
            out[step.request_id][1].extend(step.logprobs or [])
    return [out[rid] for rid in ids]


def test_max_tokens_stop_tokens_and_stop_strings_end_exactly_where_they_do_without(llm, spec_llm):
    reference = llm.generate(ECHO, SamplingParams(temperature=0, max_tokens=48, ignore_eos=True))[0]
    for max_tokens in (1, 2, 3, 5, 17):
        params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
        out = spec_llm.generate(ECHO, params)[0]
        assert out.token_ids == reference.token_ids[:max_tokens] and out.finish_reason == "length"

    stop_token = reference.token_ids[20]
    params = SamplingParams(temperature=0, max_tokens=48, ignore_eos=True, stop_token_ids=[stop_token])
    plain, spec = llm.generate(ECHO, params)[0], spec_llm.generate(ECHO, params)[0]
    assert spec.token_ids == plain.token_ids and spec.token_ids[-1] == stop_token
    assert spec.finish_reason == "stop" and stop_token not in spec.token_ids[:-1]

    stop = reference.text[len(reference.text) // 2 :][:6]
    params = SamplingParams(temperature=0, max_tokens=48, ignore_eos=True, stop=[stop])
    plain = llm.generate(ECHO, params)[0]
    streamed = "".join(spec_llm.stream(spec_llm.tokenizer.encode(ECHO), params))
    assert plain.finish_reason == "stop" and streamed == plain.text and stop not in streamed


def test_prefix_cache_chunked_prefill_and_a_tiny_cache(tiny_qwen2, llm):
    """Rejected drafts leave garbage in slots past the computed tokens: none of it may reach the prefix cache or a
    later step, also when the cache is too small for every draft (drafts are dropped, never preempt)."""
    engine = make_llm(
        tiny_qwen2, speculative="ngram", max_model_len=160, kv_cache_tokens=192, max_num_seqs=4,
        max_num_batched_tokens=24,
    ).engine
    prompts = [ECHO, ECHO + "x", PROMPTS[2], ECHO]  # shared prefixes: the last is served from the cache
    params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    got = _run(engine, prompts, params)
    assert engine.stats()["prompt_tokens_cached"] > 0 and engine.counters["draft_tokens_accepted"] > 0
    for prompt, (tokens, _) in zip(prompts, got, strict=True):
        assert tokens == llm.generate(prompt, params)[0].token_ids
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_bench_measure_speculation_runs_the_edit_workload_both_ways(tiny_qwen2):
    from qcoder import bench

    """On a tiny random model: both runs give the same greedy tokens (else it raises) and the figures are filled."""
    engine = bench.load_engine(str(tiny_qwen2), "auto", 1, kv_cache_tokens=2048)
    plain = engine.tokenizer.encode("def fib(n):")
    figures = bench.measure_speculation(engine, plain, 12, edit_max_tokens=24)
    assert figures["edit_tokens"] >= 2 and 0 <= figures["edit_acceptance"] <= 1
    assert figures["edit_decode_tps"] > 0 and figures["edit_spec_decode_tps"] > 0 and figures["spec_decode_tps"] > 0
    assert figures["edit_tokens_per_step"] >= 1


def test_server_streams_several_tokens_per_chunk(tiny_qwen2, llm, monkeypatch):
    """Through `qcoder serve`'s app and the openai SDK: one chunk may carry several tokens, the text and the
    per-token logprobs stay those of plain greedy decoding."""
    import functools

    from qcoder.engine import engine as engine_module
    from qcoder.engine.engine import LLMEngine
    from tests.serve.conftest import LiveServer, make_state

    # Draft from single matching tokens too: the tiny random model's output repeats single tokens, rarely pairs.
    monkeypatch.setattr(engine_module, "NgramDrafter", functools.partial(NgramDrafter, min_n=1))

    engine = LLMEngine(str(tiny_qwen2), max_model_len=512, kv_cache_tokens=4096, speculative="ngram")
    server = LiveServer(make_state(engine))
    try:
        stream = server.client().completions.create(
            model="tiny", prompt=ECHO, max_tokens=40, temperature=0, logprobs=1, stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = [chunk.choices[0] for chunk in stream if chunk.choices]
    finally:
        server.stop()
    expected = llm.generate(ECHO, SamplingParams(temperature=0, max_tokens=40, ignore_eos=True))[0]
    assert "".join(c.text for c in chunks) == expected.text
    per_chunk = [len(c.logprobs.tokens) for c in chunks if c.logprobs]
    assert sum(per_chunk) == 40 and max(per_chunk) > 1


def test_unknown_speculative_mode_is_one_clear_error(tiny_qwen2):
    with pytest.raises(QcoderError, match="unknown speculative mode 'eagle'"):
        make_llm(tiny_qwen2, speculative="eagle")


def test_generate_cli_with_speculation_prints_the_same_text(tiny_qwen2, llm):
    import subprocess
    import sys

    expected = llm.generate(ECHO, SamplingParams(temperature=0, max_tokens=24))[0].text
    result = subprocess.run(
        [sys.executable, "-m", "qcoder", "generate", "-m", str(tiny_qwen2), "-p", "-", "--max-tokens", "24",
         "--temperature", "0", "--stream", "--speculative", "ngram"],
        input=ECHO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"


# ----- sampling keeps the exact distribution -----


@pytest.fixture(scope="module")
def small_vocab_qwen2(tmp_path_factory):
    """The tiny model with a 512-token vocabulary (the first ids of the real tokenizer): sampling a dense
    distribution over 151,936 tokens thousands of times would take minutes."""
    from tests.conftest import QWEN25_TOKENIZER_FILES, tiny_checkpoint

    from .conftest import ENGINE_TINY

    directory = tmp_path_factory.mktemp("small-vocab-qwen2")
    return tiny_checkpoint("qwen2", directory, tokenizer_files=QWEN25_TOKENIZER_FILES, **{**ENGINE_TINY, "vocab_size": 512})


def test_sampled_tokens_follow_the_exact_distribution(small_vocab_qwen2):
    """Tokens sampled (temperature 1.5, top_k 2) with the two after the first always drafted: the joint distribution
    of the first three, over many requests, must match the model's own p(t1) p(t2|t1) p(t3|t1,t2) (chi-square)."""
    engine = make_llm(small_vocab_qwen2, speculative="ngram", max_num_seqs=64).engine
    prompt = [31, 64, 117, 401, 12, 250, 9]
    params = SamplingParams(temperature=1.5, top_k=2, max_tokens=4, ignore_eos=True, repetition_penalty=1.2)

    exact = _exact_joint(engine, prompt, params, depth=3)
    # Draft the likeliest second and third tokens whatever the first was: both acceptance and rejection happen.
    likeliest = max(exact, key=exact.get)

    class FixedDraft:
        def propose(self, tokens, limit=None):
            return list(likeliest[1:])[:limit]

    n = 800
    for i in range(n):
        engine.add_request(f"s{i}", prompt, params)
        engine.requests[f"s{i}"].drafter = FixedDraft()
    samples = {}
    while engine.has_unfinished():
        for out in engine.step():
            samples.setdefault(out.request_id, []).extend(out.new_token_ids)
    samples = {rid: tokens[:3] for rid, tokens in samples.items()}
    assert engine.counters["draft_tokens"] > 0
    assert 0 < engine.counters["draft_tokens_accepted"] < engine.counters["draft_tokens"]

    cells = sorted(exact)
    observed = torch.tensor([sum(tuple(s) == cell for s in samples.values()) for cell in cells], dtype=torch.float)
    assert int(observed.sum()) == n, "a sampled sequence fell outside the top_k support"
    expected = torch.tensor([exact[cell] for cell in cells]) * n
    assert _chi_square(observed, expected) < 24.3  # df 7, p = 0.001


def _exact_joint(engine, prompt, params, depth) -> dict[tuple[int, ...], float]:
    """p(sequence) for every `depth`-token continuation, from the sampler's own distribution at each position,
    one plain forward per prefix (no speculation involved)."""
    from qcoder.engine.sampling import SampleRow
    from qcoder.model.qwen import ForwardBatch

    def next_probs(tokens):
        batch = ForwardBatch.for_new_prompts([tokens], engine.block_manager.block_size)
        caches = [torch.zeros_like(c) for c in engine.kv_caches[:]]
        with torch.inference_mode():
            logits = engine.model(batch, caches)
        return engine.sampler.distributions(logits, [SampleRow(params, tokens, len(prompt))])[0]

    joint = {(): 1.0}
    for _ in range(depth):
        grown = {}
        for prefix, p in joint.items():
            probs = next_probs(prompt + list(prefix))
            for token in probs.nonzero().flatten().tolist():
                grown[prefix + (token,)] = p * float(probs[token])
        joint = grown
    return joint
