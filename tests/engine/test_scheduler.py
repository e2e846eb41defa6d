import pytest

from qcoder.engine.kv_cache import BlockManager
from qcoder.engine.sampling import SamplingParams
from qcoder.engine.scheduler import Scheduler, Sequence, Status
from qcoder.errors import QcoderError


def seq(rid, n, start=0):
    return Sequence(rid, list(range(start, start + n)), n, SamplingParams(), max_tokens=100)


def run_step(sched, next_token=7):
    """One fake engine step: mark tokens computed and append a token to sequences that sampled."""
    plan = sched.schedule()
    sampled = [item.seq for item in plan if item.samples]
    sched.update(plan)
    for s in sampled:
        s.token_ids.append(next_token)
    return {item.seq.request_id: item.num_new_tokens for item in plan}


def test_decodes_first_then_prefill_chunks_within_the_budget():
    sched = Scheduler(BlockManager(100, 4), max_num_seqs=4, max_num_batched_tokens=8)
    sched.add(seq("a", 3))
    assert run_step(sched) == {"a": 3}
    sched.add(seq("long", 20, start=100))
    # "a" decodes (1 token) while the long prompt is chunked into the remaining 7-token budget.
    assert run_step(sched) == {"a": 1, "long": 7}
    assert run_step(sched) == {"a": 1, "long": 7}
    assert run_step(sched) == {"a": 1, "long": 6}
    assert run_step(sched) == {"a": 1, "long": 1}


def test_max_num_seqs_limits_running():
    sched = Scheduler(BlockManager(100, 4), max_num_seqs=2, max_num_batched_tokens=64)
    for i in range(3):
        sched.add(seq(f"r{i}", 4, start=10 * i))
    assert run_step(sched) == {"r0": 4, "r1": 4}
    assert len(sched.waiting) == 1
    sched.finish(sched.running[0])
    assert run_step(sched) == {"r1": 1, "r2": 4}


def test_preemption_frees_the_newest_sequence_and_recomputes_it_later():
    # 4 blocks of 4 tokens; two 8-token prompts fill the cache, the first decode needs a new block.
    sched = Scheduler(BlockManager(4, 4, enable_prefix_caching=False), max_num_seqs=4, max_num_batched_tokens=32)
    a, b = seq("a", 8), seq("b", 8, start=50)
    sched.add(a)
    sched.add(b)
    assert run_step(sched) == {"a": 8, "b": 8}
    assert run_step(sched) == {"a": 1}
    assert b.status is Status.WAITING and b.block_table == [] and sched.num_preemptions == 1
    assert b.token_ids[-1] == 7 and len(b.token_ids) == 9  # keeps its output, recomputes all of it
    sched.finish(a)
    assert run_step(sched) == {"b": 9}
    assert b.status is Status.RUNNING


def test_abort_frees_blocks_at_once():
    bm = BlockManager(10, 4)
    sched = Scheduler(bm, max_num_seqs=4, max_num_batched_tokens=32)
    a, b = seq("a", 8), seq("b", 8, start=50)
    sched.add(a)
    sched.add(b)
    run_step(sched)
    sched.finish(a)
    assert bm.num_free_blocks == 10 - len(b.block_table)
    sched.finish(b)
    assert bm.num_free_blocks == 10 and not sched.has_unfinished()
    c = seq("c", 4)
    sched.add(c)
    sched.finish(c)  # still waiting
    assert not sched.has_unfinished()


def test_prefix_cache_hits_are_counted_once():
    sched = Scheduler(BlockManager(20, 4), max_num_seqs=4, max_num_batched_tokens=64)
    sched.add(seq("a", 13))
    run_step(sched)
    sched.add(seq("b", 13))
    assert run_step(sched) == {"a": 1, "b": 1}  # 12 of b's 13 prompt tokens came from the cache
    assert sched.prompt_tokens_cached == 12


def test_a_prompt_whose_next_block_is_in_prefill_waits_for_it():
    sched = Scheduler(BlockManager(40, 4), max_num_seqs=8, max_num_batched_tokens=8)
    for rid in ("a", "b", "c"):  # n samples of one 13-token prompt
        sched.add(seq(rid, 13))
    sched.add(seq("other", 5, start=100))  # shares nothing: not held up
    assert run_step(sched) == {"a": 8}
    assert run_step(sched) == {"a": 5, "other": 3}
    # a's prompt is cached: b and c compute only their last token, so the prompt was computed once
    assert run_step(sched) == {"a": 1, "other": 2, "b": 1, "c": 1}
    assert sched.prompt_tokens_cached == 24

    sched = Scheduler(BlockManager(40, 4), max_num_seqs=8, max_num_batched_tokens=64)
    sched.add(seq("long", 17))
    shared_head = seq("fork", 11)  # the same first 8 tokens, then its own
    shared_head.token_ids[8:] = [90, 91, 92]
    sched.add(shared_head)
    assert run_step(sched) == {"long": 17}
    assert run_step(sched) == {"long": 1, "fork": 3}  # 8 tokens from the cache


def test_without_prefix_caching_nothing_waits():
    sched = Scheduler(BlockManager(40, 4, enable_prefix_caching=False), max_num_seqs=8, max_num_batched_tokens=64)
    sched.add(seq("a", 13))
    sched.add(seq("b", 13))
    assert run_step(sched) == {"a": 13, "b": 13}


def test_budget_must_cover_one_decode_per_sequence():
    with pytest.raises(QcoderError, match="max_num_batched_tokens"):
        Scheduler(BlockManager(10, 4), max_num_seqs=8, max_num_batched_tokens=4)
