"""Polyglot runner on two fixture exercises: one stub already correct, one that needs the retry."""

import json
from pathlib import Path

import pytest

from qcoder.client import ChatResponse
from qcoder.errors import QcoderError
from qcoder.eval import polyglot

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"
LEAP_WRONG = "leap.py\n```python\ndef leap_year(year):\n    return year % 4 == 0\n```\n"
LEAP_RIGHT = "leap.py\n```python\ndef leap_year(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n```"


class ScriptedClient:
    """Answers from a list per exercise (found by the file named in the first prompt)."""

    model = "scripted"

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = scripts
        self.calls: list[list[dict]] = []

    def chat(self, messages, tools=None, *, on_delta=None, **sampling):
        self.calls.append(messages)
        name = next(n for n in self.scripts if n in messages[0]["content"])
        answers = self.scripts[name]
        return ChatResponse(content=answers[min(len(messages) // 2, len(answers) - 1)],
                            usage={"prompt_tokens": 1, "completion_tokens": 5})


def test_discover_reads_layout():
    exercises = polyglot.discover(FIXTURES, languages=["python"])
    assert [(e.language, e.name, e.solution) for e in exercises] == [
        ("python", "leap", ["leap.py"]), ("python", "two-fer", ["two_fer.py"])]
    assert "except every 400 years" in exercises[0].instructions()
    assert [e.key for e in polyglot.discover(FIXTURES, names=["two-fer"])] == ["python/two-fer"]


def test_discover_rejects_unknown_language():
    with pytest.raises(QcoderError, match="no usable toolchain"):
        polyglot.discover(FIXTURES, languages=["cobol"])


def test_rates_with_a_retry_and_a_malformed_answer(tmp_path):
    two_fer_stub = (FIXTURES / "python/exercises/practice/two-fer/two_fer.py").read_text()
    client = ScriptedClient({
        "two_fer.py": [f"Nothing to change:\n\ntwo_fer.py\n```python\n{two_fer_stub}```\n"],
        # first answer has no code block at all (malformed: the failing stub is tested), then a right fix
        "leap.py": ["I think the year logic is simple.", LEAP_RIGHT],
    })
    summary = polyglot.run(polyglot.discover(FIXTURES, ["python"]), client, tmp_path, sampling={"temperature": 0.0},
                           workers=2, progress=False)
    assert summary["exercises"] == 2
    assert summary["pass_rate_1"] == 0.5
    assert summary["pass_rate_2"] == 1.0
    assert summary["well_formed"] == pytest.approx(2 / 3)
    rows = {r["exercise"]: r for r in map(json.loads, (tmp_path / "polyglot.jsonl").read_text().splitlines())}
    assert rows["leap"]["passed_2"] and not rows["leap"]["passed_1"]
    # the retry prompt carried the failing test output, and the tests were never shown
    leap_calls = [c for c in client.calls if "leap.py" in c[0]["content"]]
    assert "The tests failed" in leap_calls[1][-1]["content"] and "leap_test" in leap_calls[1][-1]["content"]
    assert "assertIs" not in leap_calls[0][0]["content"]
    assert json.loads((tmp_path / "summary.json").read_text())["pass_rate_2"] == 1.0
    assert (tmp_path / "polyglot.png").read_bytes()[:4] == b"\x89PNG"


def test_wrong_fix_fails_both_tries(tmp_path):
    client = ScriptedClient({"leap.py": [LEAP_WRONG, LEAP_WRONG], "two_fer.py": ["two_fer.py\n```python\nx = 1\n```"]})
    summary = polyglot.run(polyglot.discover(FIXTURES, ["python"]), client, tmp_path, sampling={}, workers=1,
                           progress=False)
    assert summary["pass_rate_1"] == 0.0 and summary["pass_rate_2"] == 0.0
    assert summary["well_formed"] == 1.0


def test_parse_files_prefers_labelled_blocks():
    text = "Here:\n\n`leap.py`\n```python\nA = 1\n```\n\nnotes.txt\n```\nignored\n```\n"
    assert polyglot.parse_files(text, ["leap.py"]) == {"leap.py": "A = 1\n"}
    assert polyglot.parse_files("no code here", ["leap.py"]) is None
    assert polyglot.parse_files("a.py\n```\n1\n```", ["a.py", "b.py"]) is None


@pytest.mark.parametrize("language", ["rust", "cpp"])
def test_compiled_language_fails_then_passes_with_the_feedback(language, tmp_path):
    if not polyglot.TOOLCHAINS[language].available():
        pytest.skip(f"no {language} toolchain on PATH")
    (exercise,) = polyglot.discover(FIXTURES, [language])
    meta = exercise.path / ".meta"
    example = {name: (meta / f"example{Path(name).suffix}") for name in exercise.solution}

    def answer(source_of) -> str:
        return "\n\n".join(f"{name}\n```{language}\n{source_of(name)}```" for name in exercise.solution)

    def stub(name):
        return (exercise.path / name).read_text()

    def fixed(name):
        return example[name].read_text() if example[name].is_file() else stub(name)

    client = ScriptedClient({exercise.solution[0]: [answer(stub), answer(fixed)]})
    summary = polyglot.run([exercise], client, tmp_path, sampling={}, workers=1, progress=False)
    assert (summary["pass_rate_1"], summary["pass_rate_2"], summary["well_formed"]) == (0.0, 1.0, 1.0)
