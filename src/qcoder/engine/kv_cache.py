"""Paged KV cache bookkeeping: which cache blocks each sequence owns, and the prefix cache.

Its size: `kv_cache_capacity` (token slots for a memory budget). The cache is `num_blocks` blocks of `block_size` token slots (the tensors live in the engine; this
file only hands out block ids). A sequence's `block_table` lists its blocks in order.

Prefix caching: once a block is full *and computed*, it gets a chained hash
hash(parent block's hash, its token ids), so equal hashes mean equal whole prefixes. A new sequence
whose leading full blocks hash to cached blocks shares them (reference counts) and skips computing
them. A block whose last user leaves goes to the free list but keeps its hash, so it can still be
reused until it is evicted; the free list is LRU (the least recently freed block is reused first).
The block holding a prompt's last token is never taken from the cache: that token must be computed
because its logits give the first output token.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from typing import Protocol


def kv_cache_capacity(config, itemsize: int, memory: int, most: int) -> int:
    """Token slots for the KV cache: what `memory` bytes hold (K and V of every layer), at most `most`."""
    bytes_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * itemsize
    return min(memory // bytes_per_token, most)


def default_kv_cache_memory(device) -> int:
    """Bytes for the KV cache when not given: 80% of the free memory on a GPU, 1 GiB on the CPU."""
    if device.type == "cuda":
        import torch  # only here: the bookkeeping below needs no torch

        return int(0.8 * torch.cuda.mem_get_info(device)[0])
    return 1 << 30


class BlockOwner(Protocol):
    token_ids: list[int]
    block_table: list[int]
    block_hashes: list[bytes]  # hashes of the leading full, computed blocks of block_table
    num_computed_tokens: int


def block_hash(parent: bytes | None, token_ids: list[int]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(parent or b"")
    h.update(array("q", token_ids).tobytes())
    return h.digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int = 16, enable_prefix_caching: bool = True):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.hashes: list[bytes | None] = [None] * num_blocks
        self.cached: dict[bytes, int] = {}  # hash -> block id
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))  # LRU order: front goes first

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    def usage(self) -> float:
        return 1.0 - len(self.free) / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def allocate(self, seq: BlockOwner) -> bool:
        """Give a sequence (with no blocks) blocks for all its tokens, reusing cached prefix blocks.

        Sets seq.num_computed_tokens to the number of tokens found in the cache. Returns False (and
        changes nothing) when there are not enough free blocks.
        """
        assert not seq.block_table
        hits, hashes = self._prefix_hits(seq.token_ids)
        # A cache hit on a free block takes that block off the free list, so it costs a free block too.
        free_hits = sum(1 for b in hits if self.ref_counts[b] == 0)
        new = self.blocks_needed(len(seq.token_ids)) - len(hits)
        if new + free_hits > len(self.free):
            return False
        for b in hits:
            if self.ref_counts[b] == 0:
                del self.free[b]
            self.ref_counts[b] += 1
        seq.block_table = hits + [self._take_free_block() for _ in range(new)]
        seq.block_hashes = hashes
        seq.num_computed_tokens = len(hits) * self.block_size
        return True

    def _chain(self, token_ids: list[int], end: int, known: list[bytes] = ()) -> Iterator[tuple[int, bytes]]:
        """(j, hash of block j) for the blocks after the `known` leading hashes, up to block `end`."""
        parent = known[-1] if known else None
        for j in range(len(known), end):
            parent = block_hash(parent, token_ids[j * self.block_size : (j + 1) * self.block_size])
            yield j, parent

    def _shareable(self, token_ids: list[int]) -> int:
        """How many leading blocks can come from the cache: those that end before the last token, which is always
        computed (its logits are needed)."""
        return (len(token_ids) - 1) // self.block_size if self.enable_prefix_caching else 0

    def _prefix_hits(self, token_ids: list[int]) -> tuple[list[int], list[bytes]]:
        hits: list[int] = []
        hashes: list[bytes] = []
        for _, parent in self._chain(token_ids, self._shareable(token_ids)):
            block = self.cached.get(parent)
            if block is None:
                break
            hits.append(block)
            hashes.append(parent)
        return hits, hashes

    def next_block_to_compute(self, token_ids: list[int]) -> bytes | None:
        """The hash of the first shareable block of `token_ids` that is not in the prefix cache: the block an
        allocation would compute first, if another sequence is not computing it already."""
        chain = self._chain(token_ids, self._shareable(token_ids))
        return next((parent for _, parent in chain if parent not in self.cached), None)

    def uncomputed_blocks(self, seq: BlockOwner) -> set[bytes]:
        """Hashes of the shareable blocks of a sequence that it has not computed yet."""
        return {parent for _, parent in self._chain(seq.token_ids, self._shareable(seq.token_ids), seq.block_hashes)}

    def chain_hashes(self, token_ids: list[int], num_blocks: int) -> list[bytes]:
        """The prefix-cache hashes of the first `num_blocks` full blocks of `token_ids`."""
        return [parent for _, parent in self._chain(token_ids, num_blocks)]

    def missing(self, hashes: list[bytes]) -> list[int]:
        """The indices of `hashes` whose blocks are not in the prefix cache."""
        return [j for j, h in enumerate(hashes) if h not in self.cached]

    def adopt(self, hashes: list[bytes]) -> dict[int, int] | None:
        """Take free blocks for the hashes not in the prefix cache and register them as cached (and free, most
        recently used), for K/V filled in from elsewhere (the prompt cache on disk): {index in hashes: block}.
        None, changing nothing, when there are not enough free blocks."""
        missing = self.missing(hashes)
        # the chain's own cached free blocks go to the back of the LRU list, out of reach of the takes below
        kept = [b for h in hashes if (b := self.cached.get(h)) is not None and b in self.free]
        if not self.enable_prefix_caching or len(missing) > len(self.free) - len(kept):
            return None
        for block in kept:
            self.free.move_to_end(block)
        taken = {}
        for j in missing:
            block = self._take_free_block()
            self.hashes[block], self.cached[hashes[j]] = hashes[j], block
            self.ref_counts[block] = 0
            self.free[block] = None
            taken[j] = block
        return taken

    def _take_free_block(self) -> int:
        block, _ = self.free.popitem(last=False)
        old = self.hashes[block]
        if old is not None:  # evict it from the prefix cache
            if self.cached.get(old) == block:
                del self.cached[old]
            self.hashes[block] = None
        self.ref_counts[block] = 1
        return block

    def can_append(self, seq: BlockOwner, extra: int = 0) -> bool:
        """Whether there are slots for the sequence's tokens and `extra` more after them (a draft)."""
        return self.blocks_needed(len(seq.token_ids) + extra) - len(seq.block_table) <= len(self.free)

    def append_slot(self, seq: BlockOwner, extra: int = 0) -> None:
        """Make room for the sequence's newest token and `extra` more (call after can_append)."""
        while self.blocks_needed(len(seq.token_ids) + extra) > len(seq.block_table):
            seq.block_table.append(self._take_free_block())

    def cache_computed_blocks(self, seq: BlockOwner) -> None:
        """Register the sequence's newly full-and-computed blocks in the prefix cache."""
        if not self.enable_prefix_caching:
            return
        num_full = seq.num_computed_tokens // self.block_size
        for j, parent in list(self._chain(seq.token_ids, num_full, seq.block_hashes)):
            seq.block_hashes.append(parent)
            block = seq.block_table[j]
            if self.hashes[block] is None and parent not in self.cached:
                self.hashes[block] = parent
                self.cached[parent] = block

    def free_sequence(self, seq: BlockOwner) -> None:
        # Release back to front, so a chain's tail is evicted before its head (the head is more shareable).
        for block in reversed(seq.block_table):
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self.free[block] = None
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0
