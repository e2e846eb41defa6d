"""Getting completions: over any chat endpoint (threads), or from the in-process engine (batches).

Both yield `(job, Completion)` as completions arrive. Over HTTP the prompt is a plain chat turn; with
the in-process engine the chat template is rendered and the evalplus response prefix is appended, so
the model starts inside a ```python block (`code_prefix` restores that fence for the sanitizer).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from qcoder.eval import prompts
from qcoder.eval.datasets import Task


@dataclass(frozen=True)
class Job:
    task: Task
    sample: int


@dataclass
class Sampling:
    temperature: float = 0.0
    top_p: float = 0.95
    max_tokens: int = 1024

    def fields(self, seed: int | None = None) -> dict:
        """The request's sampling fields, named as SamplingParams' (None: unset); top_p and seed apply only
        when sampling."""
        sampled = self.temperature > 0
        return {"temperature": self.temperature, "top_p": self.top_p if sampled else None,
                "max_tokens": self.max_tokens, "seed": seed if sampled else None}


@dataclass
class Completion:
    prompt: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float
    error: str = ""


class ChatGenerator:
    """One chat request per sample, `concurrency` requests in flight."""

    code_prefix = ""

    def __init__(self, client, sampling: Sampling, concurrency: int = 4):
        self.client = client
        self.sampling = sampling
        self.concurrency = concurrency
        self.model = client.model

    def generate(self, jobs: list[Job]) -> Iterator[tuple[Job, Completion]]:
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="eval-gen") as pool:
            futures = {pool.submit(self._one, job): job for job in jobs}
            for future in as_completed(futures):
                yield futures[future], future.result()

    def _one(self, job: Job) -> Completion:
        user = prompts.instruction(job.task.prompt)
        start = time.monotonic()
        try:
            resp = self.client.chat([{"role": "user", "content": user}], **self.sampling.fields(seed=job.sample))
        except Exception as exc:  # noqa: BLE001 - a failed request is recorded on its row, the run goes on
            return Completion(user, "", 0, 0, "error", time.monotonic() - start, f"{type(exc).__name__}: {exc}")
        usage = resp.usage or {}
        return Completion(user, resp.content or "", usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                          resp.finish_reason, time.monotonic() - start)


class EngineGenerator:
    """The in-process engine: chat template + response prefix, continuously batched."""

    code_prefix = "```python\n"

    def __init__(self, llm, model_name: str, sampling: Sampling):
        self.llm = llm
        self.model = model_name
        self.sampling = sampling

    def generate(self, jobs: list[Job]) -> Iterator[tuple[Job, Completion]]:
        """All jobs go to the engine at once (it batches up to its max_num_seqs); each is yielded as it finishes,
        with the wall time since the previous one (so the seconds add up to the run's time)."""
        from qcoder.engine.sampling import SamplingParams

        params = SamplingParams(**{k: v for k, v in self.sampling.fields().items() if v is not None})
        template = self.llm.engine.chat_template
        tokenizer = self.llm.engine.tokenizer
        texts = [prompts.engine_prompt(template, job.task.prompt) for job in jobs]
        last = time.monotonic()
        for i, out in self.llm.generate_as_completed(texts, params):
            now = time.monotonic()
            yield jobs[i], Completion(texts[i], out.text, len(tokenizer.encode(texts[i])), len(out.token_ids),
                                      out.finish_reason, now - last)
            last = now
