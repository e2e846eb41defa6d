from qcoder.engine.kv_cache import BlockManager
from qcoder.engine.sampling import SamplingParams
from qcoder.engine.scheduler import Sequence


def seq(tokens):
    return Sequence("r", list(tokens), len(tokens), SamplingParams(), max_tokens=8)


def compute_all(bm, s):
    s.num_computed_tokens = len(s.token_ids)
    bm.cache_computed_blocks(s)


def test_allocate_and_free_count_blocks():
    bm = BlockManager(num_blocks=4, block_size=4)
    a = seq(range(10))  # 3 blocks
    assert bm.allocate(a)
    assert len(a.block_table) == 3 and bm.num_free_blocks == 1
    assert bm.usage() == 0.75
    b = seq(range(100, 106))  # 2 blocks: does not fit
    assert not bm.allocate(b)
    assert b.block_table == [] and bm.num_free_blocks == 1
    bm.free_sequence(a)
    assert bm.num_free_blocks == 4 and a.block_table == []


def test_append_slot_takes_a_block_only_at_a_boundary():
    bm = BlockManager(num_blocks=3, block_size=4)
    s = seq(range(4))
    bm.allocate(s)
    s.token_ids.append(4)  # 5th token needs a second block
    assert bm.can_append(s)
    bm.append_slot(s)
    assert len(s.block_table) == 2
    s.token_ids.append(5)
    bm.append_slot(s)
    assert len(s.block_table) == 2


def test_prefix_blocks_are_shared_and_the_last_token_is_always_computed():
    bm = BlockManager(num_blocks=10, block_size=4)
    a = seq(range(12))
    bm.allocate(a)
    assert a.num_computed_tokens == 0
    compute_all(bm, a)
    # Same 8-token prefix, then different: two blocks come from the cache.
    b = seq(list(range(8)) + [99, 98, 97])
    assert bm.allocate(b)
    assert b.num_computed_tokens == 8
    assert b.block_table[:2] == a.block_table[:2] and b.block_table[2] != a.block_table[2]
    assert bm.ref_counts[a.block_table[0]] == 2
    # An identical 12-token prompt: the third block holds the last token, so it is not reused.
    c = seq(range(12))
    assert bm.allocate(c)
    assert c.num_computed_tokens == 8
    assert c.block_table[2] != a.block_table[2]


def test_uncomputed_blocks_are_not_shared():
    bm = BlockManager(num_blocks=10, block_size=4)
    a = seq(range(12))
    bm.allocate(a)
    a.num_computed_tokens = 4  # one chunk of prefill done
    bm.cache_computed_blocks(a)
    b = seq(range(13))
    bm.allocate(b)
    assert b.num_computed_tokens == 4


def test_freed_cached_blocks_stay_reusable_until_evicted_lru():
    bm = BlockManager(num_blocks=4, block_size=4)
    a = seq(range(9))  # blocks: [0..3] [4..7] [8]
    bm.allocate(a)
    compute_all(bm, a)
    bm.free_sequence(a)
    assert bm.num_free_blocks == 4
    b = seq(range(9))
    bm.allocate(b)
    assert b.num_computed_tokens == 8  # came back from the free list
    compute_all(bm, b)
    bm.free_sequence(b)
    # A new unrelated 3-block sequence takes the two never-hashed blocks, then evicts the chain's tail.
    c = seq(range(50, 61))
    assert bm.allocate(c)
    bm.free_sequence(c)
    d = seq(range(9))
    assert bm.allocate(d)
    assert d.num_computed_tokens == 4  # the head block survived, the tail block was evicted


def test_prefix_caching_can_be_disabled():
    bm = BlockManager(num_blocks=10, block_size=4, enable_prefix_caching=False)
    a = seq(range(12))
    bm.allocate(a)
    compute_all(bm, a)
    b = seq(range(12))
    bm.allocate(b)
    assert b.num_computed_tokens == 0
