"""Prompt-lookup (n-gram) speculative decoding: draft a sequence's next tokens by finding its last few tokens
earlier in its own prompt and output, then check the whole draft in one forward.

Agents mostly write back code they have just read (an edited function, a file with one change), so the tokens
that followed the last earlier occurrence of the current suffix are often the next ones. Checking k drafted tokens
is one forward over k + 1 positions (the last token and the draft), which on a CPU reads the weights once, as a
single decode step does; every accepted token saves a step.

Verification keeps the model's output distribution exactly. The draft is a deterministic proposal (q is one-hot on
the drafted token), so standard speculative sampling reduces to: accept drafted token x with probability p(x),
where p is the request's full sampling distribution at that position (penalties, temperature, top_k, top_p, min_p:
Sampler.distributions); at the first rejection draw from max(p - q, 0) renormalised, i.e. p without x, and stop;
when the whole draft is accepted, draw one more token from the last position's p. A greedy p is one-hot on the
argmax, so greedy output is token-identical to decoding without speculation.

Not drafted for (the engine decides, see LLMEngine._draft): constrained requests (the grammar would have to check
each drafted token), requests with a thinking budget or a forced token, and the last token max_tokens allows.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from qcoder.errors import QcoderError

if TYPE_CHECKING:  # torch is imported where drafts are verified: the CLI reads the modes without loading it
    import torch

    from qcoder.engine.sampling import Logprobs, Sampler, SampleRow

SPECULATIVE_MODES = ("none", "ngram")
DEFAULT_MODE = "none"  # the engine's and the CLI's default (see the README for the measurements behind it)
# The last token and 7 drafted ones are 8 rows, the most the C kernels' one-row decode path takes (more go to the
# tiled prefill path): on the 0.5B's edit workload 7 drafted 69.5 tok/s, 6 drafted 67.6 and 8 drafted 47.5.
DEFAULT_DRAFT_TOKENS = 7
# A single matching token predicts the next ones too poorly: on the 0.5B, matching 2-3 tokens sped up the edit
# workload 1.73x against 1.48x when single tokens also drafted (the wrong drafts cost more than they saved).
DEFAULT_MIN_MATCH = 2


def check_mode(mode: str) -> str:
    if mode not in SPECULATIVE_MODES:
        raise QcoderError(f"unknown speculative mode {mode!r} (choose {' or '.join(SPECULATIVE_MODES)})")
    return mode


class NgramDrafter:
    """Drafts up to `k` tokens for one growing token list (prompt + output): the tokens that followed the most
    recent earlier occurrence of its last n tokens, trying n = max_n down to min_n.

    For each n it keeps a dict from every n-gram that has a following token to where that token is (the latest
    occurrence wins), extended with each new token, so a proposal costs a few dict lookups, not a scan.
    """

    def __init__(self, k: int = DEFAULT_DRAFT_TOKENS, max_n: int = 3, min_n: int = DEFAULT_MIN_MATCH):
        if k < 1 or not 1 <= min_n <= max_n:
            raise QcoderError(f"invalid n-gram drafter settings: k={k}, n={min_n}..{max_n}")
        self.k, self.max_n, self.min_n = k, max_n, min_n
        self._follows: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in range(min_n, max_n + 1)}
        self._indexed = 1  # tokens[j] for j below this are indexed as followers of the n-grams ending before them

    def propose(self, tokens: list[int], limit: int | None = None) -> list[int]:
        """Up to min(k, limit) tokens that may come next after `tokens` (the same list, grown, on every call)."""
        self._index(tokens)
        limit = self.k if limit is None else min(limit, self.k)
        if limit <= 0:
            return []
        for n in range(min(self.max_n, len(tokens) - 1), self.min_n - 1, -1):
            start = self._follows[n].get(tuple(tokens[len(tokens) - n :]))
            if start is not None:
                return tokens[start : start + limit]
        return []

    def _index(self, tokens: list[int]) -> None:
        # The n-gram ending at the last token has no follower yet: it is indexed when the next token arrives, so a
        # lookup of the current suffix only ever finds an earlier occurrence.
        for j in range(self._indexed, len(tokens)):
            for n, follows in self._follows.items():
                if j >= n:
                    follows[tuple(tokens[j - n : j])] = j
        self._indexed = max(self._indexed, len(tokens))


def verify_drafts(
    sampler: Sampler, logits: torch.Tensor, rows: list[SampleRow], drafts: list[list[int]]
) -> list[tuple[list[int], list[Logprobs | None]]]:
    """The tokens each sequence emits after a forward over its last token and its draft, with their logprobs.

    logits: len(draft) + 1 rows per sequence, sequence after sequence; row i of a sequence predicts the token after
    draft[:i]. A sequence emits the accepted prefix of its draft plus one token of the model's (a replacement for
    the first rejected token, or the one after the whole draft).
    """
    import torch

    from qcoder.engine.sampling import token_logprobs

    positions = [
        dataclasses.replace(row, pending=row.pending + draft[:i])  # the penalties count the drafted tokens before
        for row, draft in zip(rows, drafts, strict=True)
        for i in range(len(draft) + 1)
    ]
    spans, start = [], 0
    for draft in drafts:
        spans.append(range(start, start + len(draft) + 1))
        start += len(draft) + 1
    greedy = [j for j, row in enumerate(positions) if row.params.greedy]
    sampled = [j for j, row in enumerate(positions) if not row.params.greedy]
    # A greedy p is one-hot on the argmax: its draft is accepted while it matches the argmax (no dense p needed).
    choice = dict.fromkeys(greedy, 0)
    if greedy:
        argmax = sampler.process(logits[greedy].float(), [positions[j] for j in greedy]).argmax(dim=-1).tolist()
        choice = dict(zip(greedy, argmax, strict=True))
    probs = dict.fromkeys(sampled)
    if sampled:
        probs = dict(zip(sampled, sampler.distributions(logits[sampled], [positions[j] for j in sampled]), strict=True))

    results = []
    for row, draft, span in zip(rows, drafts, spans, strict=True):
        if row.params.greedy:
            targets = [choice[j] for j in span]
            n = next((i for i, (d, t) in enumerate(zip(draft, targets, strict=False)) if d != t), len(draft))
            tokens = draft[:n] + [targets[n]]
        else:
            tokens = accept(torch.stack([probs[j] for j in span]), draft, row.generator)
        lps: list[Logprobs | None] = [None] * len(tokens)
        if row.params.logprobs is not None:
            raw = torch.log_softmax(logits[span.start : span.start + len(tokens)].float(), dim=-1)
            lps = [token_logprobs(raw[i], t, row.params.logprobs) for i, t in enumerate(tokens)]
        results.append((tokens, lps))
    return results


def accept(probs: torch.Tensor, draft: list[int], generator: torch.Generator | None) -> list[int]:
    """Speculative sampling with a one-hot proposal. probs: [len(draft) + 1, vocab], the target distribution at
    each position; returns the accepted prefix of the draft and one token drawn from the target."""
    import torch

    for i, token in enumerate(draft):
        p = float(probs[i, token])
        if p >= 1.0 or (p > 0.0 and torch.rand((), generator=generator, device=probs.device).item() < p):
            continue
        residual = probs[i].clone()
        residual[token] = 0.0
        return draft[:i] + [_draw(residual, generator)]
    return draft + [_draw(probs[len(draft)], generator)]


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One token from unnormalised probabilities; a one-hot row (greedy) without using the random stream."""
    import torch

    candidates = probs.nonzero().flatten()  # after top_k / top_p usually a handful of the whole vocabulary
    if len(candidates) == 1:
        return int(candidates[0])
    return int(candidates[torch.multinomial(probs[candidates], 1, generator=generator)])
