"""Sampling parameters and the batched sampler.

One `Sampler` call turns a step's logits [B, vocab] into one token per row, each row with its own
parameters. The order of operations follows Hugging Face `generate`:

  repetition penalty (prompt + output tokens) -> presence / frequency penalties (output tokens)
  -> grammar mask (structured output: forbidden tokens get -inf)
  -> greedy (temperature == 0) or: temperature -> top_k -> top_p -> min_p -> sample.

Logprobs are the model's raw log-softmax (before penalties and temperature), the convention vLLM and
the OpenAI API use: they describe the model, not the sampling settings. A row with a seed draws its
noise from its own torch.Generator, so its tokens do not depend on which other requests share the batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

# The field names live in a torch-free module so that an HTTP-only client (the agent against a remote endpoint)
# never imports torch; re-exported here beside SamplingParams.
from qcoder.engine.sampling_fields import (  # noqa: F401
    EXTRA_SAMPLING_FIELDS,
    OPENAI_SAMPLING_FIELDS,
    SAMPLING_FIELDS,
    check_sampling_names,
    sampling_fields,
)
from qcoder.errors import QcoderError

if TYPE_CHECKING:
    from qcoder.engine.structured import Constraint


@dataclass
class SamplingParams:
    max_tokens: int | None = None  # None: until a stop condition or the context window is full
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # None = off; N >= 0 = the sampled token's logprob plus the top N
    thinking_budget: int | None = None  # max tokens inside <think>...</think> before "</think>" is forced
    skip_special_tokens: bool = True
    constraint: Constraint | None = None  # structured output: the text must match it (qcoder.engine.structured)

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        self.stop_token_ids = list(self.stop_token_ids)
        _check(self.max_tokens is None or self.max_tokens >= 1, "max_tokens", "must be >= 1")
        _check(self.temperature >= 0, "temperature", "must be >= 0")
        _check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        _check(self.top_k >= 0 or self.top_k == -1, "top_k", "must be >= 0 (0 or -1 = off)")
        if self.top_k == -1:  # vLLM spells "off" as -1
            self.top_k = 0
        _check(0 <= self.min_p <= 1, "min_p", "must be in [0, 1]")
        _check(self.repetition_penalty > 0, "repetition_penalty", "must be > 0")
        _check(-2 <= self.presence_penalty <= 2, "presence_penalty", "must be in [-2, 2]")
        _check(-2 <= self.frequency_penalty <= 2, "frequency_penalty", "must be in [-2, 2]")
        _check(self.logprobs is None or 0 <= self.logprobs <= 20, "logprobs", "must be in [0, 20]")
        _check(self.thinking_budget is None or self.thinking_budget >= 0, "thinking_budget", "must be >= 0")
        _check(all(isinstance(s, str) and s for s in self.stop), "stop", "must be non-empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def from_generation_config(cls, cfg: dict | None, **overrides) -> SamplingParams:
        """Defaults from a checkpoint's generation_config.json; overrides that are None are ignored.

        Qwen3-Coder ships temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05.
        """
        cfg = cfg or {}
        values = {}
        for key in ("temperature", "top_p", "top_k", "repetition_penalty"):
            if cfg.get(key) is not None:
                values[key] = cfg[key]
        if cfg.get("do_sample") is False:
            values["temperature"] = 0.0
        if cfg.get("max_new_tokens") is not None:
            values["max_tokens"] = cfg["max_new_tokens"]
        names = {f.name for f in dataclasses.fields(cls)}
        for key, value in overrides.items():
            if key not in names:
                raise QcoderError(f"unknown sampling parameter {key!r}")
            if value is not None:
                values[key] = value
        return cls(**values)


def _check(ok: bool, name: str, rule: str) -> None:
    if not ok:
        raise QcoderError(f"invalid sampling parameter {name}: {rule}")


class SeenTokens:
    """The distinct ids of a growing token list, as a tensor for the repetition penalty. Kept per request and
    extended with each step's new ids: rebuilding it from the whole prompt every step cost milliseconds per token
    on long (agent) prompts."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._count = 0
        self.ids = torch.empty(0, dtype=torch.long)

    def update(self, token_ids: list[int]) -> torch.Tensor:
        fresh = []
        for t in token_ids[self._count :]:
            if t not in self._seen:
                self._seen.add(t)
                fresh.append(t)
        self._count = len(token_ids)
        if fresh:
            self.ids = torch.cat([self.ids, torch.tensor(fresh, dtype=torch.long)])
        return self.ids


@dataclass
class SampleRow:
    """What the sampler needs to know about one sequence in the batch."""

    params: SamplingParams
    token_ids: list[int]  # prompt + output so far (repetition penalty)
    num_prompt_tokens: int  # token_ids[num_prompt_tokens:] are the output (presence / frequency)
    generator: torch.Generator | None = None  # set when params.seed is given
    forced_token: int | None = None  # emit this token instead of sampling (thinking budget)
    seen: SeenTokens | None = None  # the request's distinct tokens so far (else computed from token_ids)
    token_mask: torch.Tensor | None = None  # structured output: the allowed tokens as a bitmask (int32 words)
    pending: list[int] = field(default_factory=list)  # drafted tokens after token_ids, counted by the penalties


Logprobs = tuple[float, list[tuple[int, float]]]  # (sampled token's logprob, top-N [(token_id, logprob)])


class Sampler:
    def __call__(self, logits: torch.Tensor, rows: list[SampleRow]) -> tuple[list[int], list[Logprobs | None]]:
        assert logits.shape[0] == len(rows)
        logits = logits.float()
        want_logprobs = [r.params.logprobs is not None for r in rows]
        raw_logprobs = torch.log_softmax(logits, dim=-1) if any(want_logprobs) else None
        tokens = self._sample(self.process(logits, rows), rows)
        for i, row in enumerate(rows):
            if row.forced_token is not None:
                tokens[i] = row.forced_token
        logprobs: list[Logprobs | None] = [None] * len(rows)
        for i, row in enumerate(rows):
            if want_logprobs[i]:
                logprobs[i] = token_logprobs(raw_logprobs[i], tokens[i], row.params.logprobs)
        return tokens, logprobs

    def distributions(self, logits: torch.Tensor, rows: list[SampleRow]) -> torch.Tensor:
        """The distribution each row's token is drawn from, [B, vocab] fp32: after penalties, the grammar mask,
        temperature, top_k, top_p and min_p; one-hot on the choice for greedy rows. Speculative decoding
        (speculative.py) checks drafted tokens against it."""
        logits = self.process(logits.float(), rows)
        probs = torch.zeros_like(logits)
        greedy = [i for i, r in enumerate(rows) if r.params.greedy]
        if greedy:
            probs[greedy, logits[greedy].argmax(dim=-1)] = 1.0
        for group in self._random_groups(rows, logits.shape[1]):
            group_probs, ids = _filtered_probs(logits[group], [rows[i] for i in group])
            group_probs = group_probs / group_probs.sum(dim=-1, keepdim=True)  # min_p leaves them unnormalised
            probs[group] = group_probs if ids is None else probs[group].scatter_add(1, ids, group_probs)  # padding adds 0
        return probs

    def process(self, logits: torch.Tensor, rows: list[SampleRow]) -> torch.Tensor:
        """Penalties, then the grammar masks of constrained rows (fp32 logits in, new logits out)."""
        if any(
            r.params.repetition_penalty != 1 or r.params.presence_penalty or r.params.frequency_penalty for r in rows
        ):
            logits = self._apply_penalties(logits.clone(), rows)
        masked = [i for i, r in enumerate(rows) if r.token_mask is not None]
        if masked:  # only the constrained rows are touched
            from qcoder.engine.structured import apply_bitmask

            index = torch.tensor(masked, device=logits.device)
            allowed = apply_bitmask(logits[index], torch.stack([rows[i].token_mask for i in masked]))
            logits = logits.index_put((index,), allowed)  # out of place: the model's logits are inference tensors
        return logits

    @staticmethod
    def _apply_penalties(logits: torch.Tensor, rows: list[SampleRow]) -> torch.Tensor:
        device = logits.device
        for i, row in enumerate(rows):
            p = row.params
            if p.repetition_penalty != 1.0 and row.token_ids:
                # HF semantics: every token seen in prompt or output is made less likely, once.
                if row.seen is not None:
                    seen = row.seen.update(row.token_ids).to(device)
                else:
                    seen = torch.tensor(sorted(set(row.token_ids)), dtype=torch.long, device=device)
                if row.pending:  # a repeated id is harmless: every copy writes the same penalized value
                    seen = torch.cat([seen, torch.tensor(row.pending, dtype=torch.long, device=device)])
                values = logits[i, seen]
                logits[i, seen] = torch.where(values > 0, values / p.repetition_penalty, values * p.repetition_penalty)
            output = row.token_ids[row.num_prompt_tokens :] + row.pending
            if (p.presence_penalty or p.frequency_penalty) and output:
                # OpenAI semantics: logit -= frequency * count + presence * (count > 0), over output tokens.
                ids, counts = torch.tensor(output, dtype=torch.long, device=device).unique(return_counts=True)
                logits[i, ids] -= p.frequency_penalty * counts.float() + p.presence_penalty
        return logits

    @staticmethod
    def _random_groups(rows: list[SampleRow], vocab: int) -> list[list[int]]:
        """The sampled (non-greedy) rows in two groups: rows with a top_k only need their top candidates (a cheap
        topk instead of sorting the vocabulary). The groups are sampled apart so that a row's random draws never
        depend on its neighbours."""
        random_rows = [i for i, r in enumerate(rows) if not r.params.greedy]
        with_k = [i for i in random_rows if 0 < rows[i].params.top_k < vocab]
        without_k = [i for i in random_rows if not 0 < rows[i].params.top_k < vocab]
        return [group for group in (with_k, without_k) if group]

    @classmethod
    def _sample(cls, logits: torch.Tensor, rows: list[SampleRow]) -> list[int]:
        tokens = logits.argmax(dim=-1).tolist()  # the answer for greedy rows
        for group in cls._random_groups(rows, logits.shape[1]):
            for i, token in zip(group, _sample_group(logits[group], [rows[i] for i in group]), strict=True):
                tokens[i] = token
        return tokens


def token_logprobs(raw: torch.Tensor, token: int, top_n: int) -> Logprobs:
    """A token's entry from one row of the model's raw log-softmax: its logprob and the top `top_n` [(id, logprob)]."""
    top: list[tuple[int, float]] = []
    if top_n:
        values, ids = raw.topk(top_n)
        top = list(zip(ids.tolist(), values.tolist(), strict=True))
    return raw[token].item(), top


def _sample_group(logits: torch.Tensor, rows: list[SampleRow]) -> list[int]:
    probs, ids = _filtered_probs(logits, rows)
    # Exponential race: argmax(p / E) with E ~ Exp(1) draws from p (no renormalisation needed).
    # Each row draws exactly as many numbers as it has candidates, from its own generator when seeded.
    top_k = _top_k(rows, logits.shape[1])
    noise = torch.ones_like(probs)
    for i, (row, k) in enumerate(zip(rows, top_k, strict=True)):
        noise[i, :k].exponential_(generator=row.generator)
    choice = (probs / noise).argmax(dim=-1)
    if ids is not None:
        choice = ids.gather(1, choice[:, None]).squeeze(1)
    return choice.tolist()


def _top_k(rows: list[SampleRow], vocab: int) -> list[int]:
    return [r.params.top_k if 0 < r.params.top_k < vocab else vocab for r in rows]


# top_p without top_k: the tokens above this probability are the nucleus candidates where they hold top_p of the
# mass (at most 1/NUCLEUS_FLOOR of them); sorting the whole vocabulary (150K entries per row, every step) made a
# 6-row step's sampling take 275 ms against 31 ms this way.
NUCLEUS_FLOOR = 1e-4


def _nucleus_candidates(logits: torch.Tensor, top_p: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(logits, ids, probabilities) of the columns every row's nucleus lies in, sorted by logit: the tokens above
    NUCLEUS_FLOOR when they hold each row's top_p of the mass (the nucleus is then among them, exactly), padded with
    -inf; else the whole vocabulary sorted, without probabilities (the softmax over it gives them)."""
    probs = logits.softmax(dim=-1)
    above = probs > NUCLEUS_FLOOR
    held = probs.masked_fill(~above, 0.0).sum(dim=-1)
    if not all(h >= p for h, p in zip(held.tolist(), top_p, strict=True)):  # top_p 1.0 rows need every token
        values, ids = logits.sort(dim=-1, descending=True)
        return values, ids, None
    columns = [row.nonzero().squeeze(1) for row in above]
    width = max(len(c) for c in columns)
    values = logits.new_full((logits.shape[0], width), float("-inf"))
    column_probs = logits.new_zeros((logits.shape[0], width))
    ids = torch.zeros((logits.shape[0], width), dtype=torch.long, device=logits.device)
    for i, c in enumerate(columns):
        kept, order = logits[i, c].sort(descending=True)
        values[i, : len(c)], ids[i, : len(c)], column_probs[i, : len(c)] = kept, c[order], probs[i, c[order]]
    return values, ids, column_probs


def _filtered_probs(logits: torch.Tensor, rows: list[SampleRow]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """temperature -> top_k -> top_p -> min_p for rows that sample. Returns the probabilities (not renormalised
    after min_p) and, when the columns are candidates sorted by logit, their token ids (else None: column = id)."""
    vocab = logits.shape[1]
    device = logits.device
    logits = logits / torch.tensor([r.params.temperature for r in rows], device=device)[:, None]
    top_k = _top_k(rows, vocab)
    top_p = [r.params.top_p for r in rows]

    ids, column_probs = None, None
    if max(top_k) < vocab:
        logits, ids = logits.topk(max(top_k), dim=-1)
    elif min(top_p) < 1.0:
        logits, ids, column_probs = _nucleus_candidates(logits, top_p)
    if ids is not None:
        rank = torch.arange(logits.shape[1], device=device)[None, :]
        logits = logits.masked_fill(rank >= torch.tensor(top_k, device=device)[:, None], float("-inf"))
        # top_p: drop a token when the tokens ranked above it already hold top_p of the mass (of the whole
        # vocabulary where the columns are the nucleus candidates only).
        probs = logits.softmax(dim=-1) if column_probs is None else column_probs
        mass_before = probs.cumsum(dim=-1) - probs
        p = torch.tensor([p if p < 1.0 else 2.0 for p in top_p], device=device)
        logits = logits.masked_fill((mass_before >= p[:, None]) & (rank > 0), float("-inf"))

    probs = logits.softmax(dim=-1)
    min_p = torch.tensor([r.params.min_p for r in rows], device=device)
    if bool((min_p > 0).any()):
        threshold = min_p[:, None] * probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < threshold, 0.0)
    return probs, ids
