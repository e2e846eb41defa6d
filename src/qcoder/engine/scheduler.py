"""Continuous batching: which sequences run in the next step, and how many tokens each computes.

Each `schedule()` builds one step under a token budget (`max_num_batched_tokens`):
  1. every running sequence that is decoding (one new token each) comes first, so long prompts never
     stall generation; if the cache has no slot for a decode, the newest running sequence is preempted
     (its blocks freed, recomputed later: with the prefix cache most of it comes back for free);
  2. running sequences still in prefill continue with a chunk of their prompt (chunked prefill);
  3. waiting sequences are admitted in arrival order while the budget, `max_num_seqs` and the free
     blocks allow, taking their cached prefix blocks. One whose next uncached block another sequence's prefill
     is computing waits until it is cached: `n` samples of a prompt, or requests sent together with one long
     system prompt, compute it once instead of side by side.
A sequence whose chunk reaches its last token is sampled this step; a partial chunk is not.

Speculative decoding (speculative.py): with a `drafter`, a decode may also feed drafted tokens after its last one,
after every decode has its slot and within the token budget; a draft never preempts anything (without free blocks
it is dropped). Only the last token counts as computed in `update`; the engine adds the drafted tokens it accepts
with `accept_drafted`, and the cache slots of rejected ones are simply written again later.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from qcoder.engine.kv_cache import BlockManager
from qcoder.engine.sampling import SamplingParams
from qcoder.errors import QcoderError


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    request_id: str
    token_ids: list[int]  # prompt + output
    num_prompt_tokens: int
    params: SamplingParams
    max_tokens: int  # output tokens allowed (params.max_tokens capped by the context window)
    status: Status = Status.WAITING
    num_computed_tokens: int = 0  # tokens whose K/V is in the cache
    num_cached_tokens: int = 0  # prompt tokens taken from the prefix cache at the first admission
    admitted: bool = False  # has been admitted at least once (a preempted sequence is admitted again)
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)

    @property
    def num_pending_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens


@dataclass
class ScheduledSeq:
    seq: Sequence
    num_new_tokens: int  # tokens fed this step: token_ids[num_computed_tokens:][:num_new_tokens - len(draft)] + draft
    draft: list[int] = field(default_factory=list)  # drafted tokens fed after a decode's last token

    @property
    def samples(self) -> bool:
        return self.seq.num_computed_tokens + self.num_new_tokens - len(self.draft) == len(self.seq.token_ids)


class Scheduler:
    def __init__(
        self,
        block_manager: BlockManager,
        max_num_seqs: int = 16,
        max_num_batched_tokens: int = 512,
        drafter: Callable[[Sequence, int], list[int]] | None = None,
    ):
        """drafter(seq, most): up to `most` tokens to feed after the decoding sequence's last one (speculation)."""
        if max_num_batched_tokens < max_num_seqs:
            raise QcoderError("max_num_batched_tokens must be >= max_num_seqs (each decode needs one token)")
        self.blocks = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.drafter = drafter
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        self.prompt_tokens_cached = 0

    def add(self, seq: Sequence) -> None:
        seq.status = Status.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[ScheduledSeq]:
        budget = self.max_num_batched_tokens
        scheduled: list[ScheduledSeq] = []

        # 1. Decodes. Iterate over a copy: preemption removes sequences from the tail of `running`.
        for seq in list(self.running):
            if seq.status is not Status.RUNNING or seq.num_pending_tokens != 1:
                continue
            while not self.blocks.can_append(seq):
                victim = self.running[-1]
                self._preempt(victim)
                if victim is seq:
                    break
            if seq.status is not Status.RUNNING:
                continue
            self.blocks.append_slot(seq)
            scheduled.append(ScheduledSeq(seq, 1))
            budget -= 1
        if self.drafter is not None:
            budget = self._add_drafts(scheduled, budget)

        # 2. Running prefills continue with the next chunk.
        for seq in self.running:
            if budget == 0:
                break
            if seq.num_pending_tokens > 1:
                n = min(seq.num_pending_tokens, budget)
                scheduled.append(ScheduledSeq(seq, n))
                budget -= n

        # 3. Admit waiting sequences, in arrival order, except those whose next block a prefill is computing.
        in_prefill = None
        for seq in list(self.waiting):
            if budget == 0 or len(self.running) >= self.max_num_seqs:
                break
            if in_prefill is None:
                in_prefill = set().union(*(self.blocks.uncomputed_blocks(s) for s in self.running
                                           if s.num_pending_tokens > 1))
            if in_prefill and self.blocks.next_block_to_compute(seq.token_ids) in in_prefill:
                continue
            if not self.blocks.allocate(seq):
                break
            if not seq.admitted:
                seq.admitted = True
                seq.num_cached_tokens = seq.num_computed_tokens
                self.prompt_tokens_cached += seq.num_computed_tokens
            self.waiting.remove(seq)
            seq.status = Status.RUNNING
            self.running.append(seq)
            if seq.num_pending_tokens > 1:
                in_prefill |= self.blocks.uncomputed_blocks(seq)
            n = min(seq.num_pending_tokens, budget)
            scheduled.append(ScheduledSeq(seq, n))
            budget -= n
        return scheduled

    def _add_drafts(self, decodes: list[ScheduledSeq], budget: int) -> int:
        """Give decodes their drafted tokens while the budget and the free blocks allow; returns the budget left."""
        for item in decodes:
            if budget == 0:
                break
            draft = self.drafter(item.seq, budget)[:budget]
            if draft and self.blocks.can_append(item.seq, len(draft)):
                self.blocks.append_slot(item.seq, len(draft))
                item.draft = draft
                item.num_new_tokens += len(draft)
                budget -= len(draft)
        return budget

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free_sequence(seq)
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def update(self, scheduled: list[ScheduledSeq]) -> None:
        """Record that the scheduled tokens were computed (before any sampled token is appended)."""
        for item in scheduled:
            item.seq.num_computed_tokens += item.num_new_tokens - len(item.draft)
            self.blocks.cache_computed_blocks(item.seq)

    def accept_drafted(self, seq: Sequence, n: int) -> None:
        """The sequence's newest n tokens (appended by the engine) are drafted ones this step computed."""
        seq.num_computed_tokens += n
        self.blocks.cache_computed_blocks(seq)

    def finish(self, seq: Sequence) -> None:
        """Remove a sequence (finished or aborted) and free its blocks at once."""
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING:
            self.waiting.remove(seq)
        self.blocks.free_sequence(seq)
        seq.status = Status.FINISHED
