"""Prompt construction: evalplus instruct wording; the engine path appends the response prefix."""

from dataclasses import dataclass

from qcoder.eval import prompts
from qcoder.eval.datasets import Task
from qcoder.eval.generation import EngineGenerator, Job, Sampling
from qcoder.eval.sanitize import sanitize

TASK = Task("T/0", 'def inc(x):\n    """Add one."""\n', "inc", "", "humaneval")


@dataclass
class Output:
    text: str
    token_ids: list
    finish_reason: str = "stop"


class FakeTemplate:
    def render(self, messages, add_generation_prompt=True):
        assert add_generation_prompt
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
            "<|im_start|>assistant\n"


class FakeLLM:
    """The qcoder.LLM surface EngineGenerator uses: generate(prompts, params) and engine.{tokenizer,chat_template}."""

    def __init__(self):
        self.prompts, self.params = [], None
        self.engine = type("Engine", (), {"chat_template": FakeTemplate(), "tokenizer": self})()

    def encode(self, text):
        return list(range(len(text.split())))

    def generate_as_completed(self, texts, params):
        self.prompts += texts
        self.params = params
        for i in reversed(range(len(texts))):  # finishing out of order
            yield i, Output(f"def inc(x):\n    return x + {i + 1}\n```\n\nThis adds one.", [1, 2, 3])


def test_instruction_wording():
    text = prompts.instruction(TASK.prompt)
    assert text == ("Please provide a self-contained Python script that solves the following problem in a markdown "
                    "code block:\n```\ndef inc(x):\n    \"\"\"Add one.\"\"\"\n```\n")


def test_engine_prompt_ends_inside_the_response_prefix():
    llm = FakeLLM()
    generator = EngineGenerator(llm, "fake", Sampling(temperature=0.0, max_tokens=64))
    results = list(generator.generate([Job(TASK, 0), Job(TASK, 1), Job(TASK, 2)]))
    assert len(results) == 3 and len(llm.prompts) == 3
    assert [job.sample for job, _ in results] == [2, 1, 0]
    results.reverse()
    assert llm.prompts[0].endswith("<|im_start|>assistant\nBelow is a Python script with a self-contained function "
                                   "that solves the problem and passes corresponding tests:\n```python\n")
    assert llm.params.temperature == 0.0 and llm.params.max_tokens == 64
    job, completion = results[0]
    assert completion.completion_tokens == 3
    code = sanitize(generator.code_prefix + completion.text, TASK.entry_point, TASK.prompt)
    assert code == "def inc(x):\n    return x + 1\n"
