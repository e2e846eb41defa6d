"""Prompt wording of the Qwen2.5-Coder report / evalplus instruct protocol."""

from __future__ import annotations

INSTRUCTION_PREFIX = (
    "Please provide a self-contained Python script that solves the following problem in a markdown code block:"
)
RESPONSE_PREFIX = (
    "Below is a Python script with a self-contained function that solves the problem and passes corresponding "
    "tests:\n```python\n"
)


def instruction(task_prompt: str) -> str:
    """The user turn: the instruction, then the task's prompt in a code block."""
    return f"{INSTRUCTION_PREFIX}\n```\n{task_prompt.strip()}\n```\n"


def messages(task_prompt: str) -> list[dict]:
    return [{"role": "user", "content": instruction(task_prompt)}]


def engine_prompt(chat_template, task_prompt: str) -> str:
    """Rendered chat prompt with the response prefix already spoken by the assistant."""
    return chat_template.render(messages(task_prompt), add_generation_prompt=True) + RESPONSE_PREFIX
