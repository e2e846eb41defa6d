"""The test-verified repair path end to end: the real CLI, a scripted model on loopback, real pytest runs."""

import json
import textwrap

from tests.fake_openai import FakeModel, call

from .conftest import qcoder_cli

CALC = """def add(a, b):
    return a - b


def mul(a, b):
    return a * b
"""
TESTS = """from calc import add, mul


def test_add():
    assert add(2, 3) == 5


def test_add_zero():
    assert add(3, 0) == 3


def test_mul():
    assert mul(2, 3) == 6
"""


def fence(code: str, lead: str = "") -> dict:
    return {"content": f"{lead}```python\n{textwrap.dedent(code).strip()}\n```\n"}


def repair_settings(workspace, table: str) -> None:
    """The workspace's .qcoder/settings.toml with `table` as its [repair] table."""
    (workspace / ".qcoder").mkdir()
    (workspace / ".qcoder" / "settings.toml").write_text(f"[repair]\n{table}")


def project(workspace, candidates: int, rounds: int = 1, small_fixes: int = 0):
    """calc.py with a one-token bug; the one-token search is off unless asked for, so the model's turn comes."""
    (workspace / "calc.py").write_text(CALC)
    (workspace / "test_calc.py").write_text(TESTS)
    repair_settings(workspace, f"candidates = {candidates}\nrounds = {rounds}\nsmall_fixes = {small_fixes}\n")


def clamp_project(workspace, table: str):
    """clamp.py returning x unclamped: test_low and test_high fail, test_inside passes."""
    (workspace / "clamp.py").write_text("def clamp(x, lo, hi):\n    return x\n")
    (workspace / "test_clamp.py").write_text(
        "from clamp import clamp\n\n\ndef test_low():\n    assert clamp(-5, 0, 10) == 0\n\n\n"
        "def test_high():\n    assert clamp(50, 0, 10) == 10\n\n\ndef test_inside():\n    assert clamp(5, 0, 10) == 5\n")
    repair_settings(workspace, table)


def headless(workspace, fake, home, task: str):
    """`qcoder -p TASK` in yolo mode with stream-json output against the scripted model, which is closed after."""
    try:
        return qcoder_cli(["-p", task, "-y", "--trust", "--output-format", "stream-json"], workspace, fake, home)
    finally:
        fake.close()


def events(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_repair_rejects_test_edits_and_breakage_and_keeps_the_smallest_passing_diff(workspace, home):
    project(workspace, candidates=4)
    fake = FakeModel([{"choices": [
        fence("def test_add():\n    assert True", "# test_calc.py\n"),  # edits the test: rejected unseen
        fence("def add(a, b):\n    return 5"),  # fixes test_add, breaks test_add_zero
        fence('''
            def add(a, b):
                """Sum of a and b."""
                total = 0
                for value in (a, b):
                    total += value
                return total
        '''),  # passes, but a bigger change
        fence("def add(a, b):\n    return a + b", "Here is the fix:\n\n"),  # passes, smallest
    ]}])
    proc = headless(workspace, fake, home, "Fix the failing test")
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "test_calc.py").read_text() == TESTS
    assert (workspace / "calc.py").read_text() == CALC.replace("a - b", "a + b")
    request = fake.requests[0]
    assert request["n"] == 4 and "tools" not in request
    # the reply ends before it copies the next function, or the failing test shown to it
    assert request["stop"] == ["\n```\n", "\ndef test_", "\ndef mul("]
    assert "def add(a, b):\n    return a - b" in request["messages"][-1]["content"]  # the suspect, in full
    assert "def test_add():" in request["messages"][-1]["content"]  # the failing test
    got = {e["index"]: e for e in events(proc) if e["type"] == "candidate"}
    assert got[1]["status"] == "rejected" and "test_calc.py" in got[1]["reason"]
    assert got[2]["status"] == "failed" and "breaks test_add_zero" in got[2]["reason"]
    assert got[3]["status"] == "untested" and got[4]["status"] == "passed" and got[4]["code"].endswith("a + b")
    done = [e for e in events(proc) if e["type"] == "repair" and e["phase"] == "done"]
    assert done == [{"type": "repair", "phase": "done", "fixed": True, "chosen": 4, "files": ["calc.py"], "tried": 4}]
    (round_,) = [e for e in events(proc) if e["type"] == "repair" and e["phase"] == "round"]
    assert round_["candidates"] == 4 and round_["refine"] is None
    assert round_["sampling_s"] >= 0 and round_["testing_s"] > 0  # two candidates ran the tests
    final = events(proc)[-1]
    assert final["status"] == "success" and final["test_result"]["passed"] is True
    assert "+    return a + b" in final["final_message"]
    assert len(fake.requests) == 1  # verified and written without the general loop


def test_a_one_token_fix_is_found_by_the_tests_before_the_model_is_asked(workspace, home):
    project(workspace, candidates=2, small_fixes=60)
    (workspace / "calc.py").write_text("# keep this comment\n" + CALC)
    fake = FakeModel([])  # any request would fail the run
    proc = headless(workspace, fake, home, "Fix the failing test")
    assert proc.returncode == 0, proc.stderr
    assert fake.requests == []
    assert (workspace / "calc.py").read_text() == "# keep this comment\n" + CALC.replace("a - b", "a + b")
    search = next(e for e in events(proc) if e["type"] == "repair" and e["phase"] == "small_fixes")
    assert search["fixed"] and search["fix"] == "calc.py line 3: `-` -> `+`"
    assert events(proc)[-1]["test_result"]["passed"] is True


def test_a_one_token_fix_of_one_bug_of_two_is_handed_to_the_model_to_finish(workspace, home):
    project(workspace, candidates=1, small_fixes=60)
    (workspace / "calc.py").write_text(CALC.replace("a * b", "a + b"))  # mul's bug is no one-token change
    fake = FakeModel([{"choices": [fence("def mul(a, b):\n    return a * b")]}])
    proc = headless(workspace, fake, home, "Fix the failing tests")
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "calc.py").read_text() == CALC.replace("a - b", "a + b")
    partial = next(e for e in events(proc) if e["type"] == "candidate")
    assert partial["index"] == 1 and partial["code"].startswith("def add(a, b):\n    return a + b")
    prompt = fake.requests[0]["messages"][-1]["content"]
    assert "return a + b" in prompt and "return a - b" not in prompt  # the model starts from the partial fix
    assert "Test test_mul in test_calc.py still fails" in prompt
    assert len(fake.requests) == 1


def test_a_candidate_one_token_from_passing_is_finished_by_the_search(workspace, home):
    clamp_project(workspace, "candidates = 2\nrounds = 1\n")
    fake = FakeModel([{"choices": [
        fence("def clamp(x, lo, hi):\n    return max(lo, min(x, hi - 1))"),  # fixes test_low, not test_high
        fence("def clamp(x, lo, hi):\n    return lo"),  # breaks test_inside: not worth a search
    ]}])
    proc = headless(workspace, fake, home, "Fix clamp")
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "clamp.py").read_text() == "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"
    searches = [e for e in events(proc) if e["type"] == "repair" and e["phase"] == "small_fixes"]
    assert [s["candidate"] for s in searches] == [1]  # the code as it was offers no one-token change
    assert searches[0]["fix"] == "clamp.py line 2: `hi - 1` -> `hi` of candidate 1"
    assert len(fake.requests) == 1


def test_a_candidate_that_makes_some_tests_pass_is_shown_back_with_the_test_it_still_fails(workspace, home):
    clamp_project(workspace, "candidates = 2\nrounds = 2\nsmall_fixes = 0\n")
    fake = FakeModel([
        {"choices": [fence("def clamp(x, lo, hi):\n    return max(lo, x)"),  # fixes test_low only
                     fence("def clamp(x, lo, hi):\n    return hi")]},  # breaks test_inside
        {"choices": [fence("def clamp(x, lo, hi):\n    return max(lo, min(x, hi))"),
                     fence("def clamp(x, lo, hi):\n    return max(lo, x)")]},  # the version it was shown
    ])
    proc = headless(workspace, fake, home, "Fix clamp")
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "clamp.py").read_text() == "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"
    second = fake.requests[1]["messages"][-1]["content"]
    assert "is close: 2 test(s) pass" in second and "return max(lo, x)" in second
    assert "Test test_high in test_clamp.py still fails" in second and "assert clamp(50, 0, 10) == 10" in second
    assert "assert 50 == 10" in second and "test_low" not in second  # only what still fails
    got = {e["index"]: e for e in events(proc) if e["type"] == "candidate"}
    assert got[3]["status"] == "passed" and got[4]["status"] == "rejected"  # no change to the version shown
    assert len(fake.requests) == 2


def test_corrections_that_come_back_unchanged_end_the_refining(workspace, home):
    clamp_project(workspace, "candidates = 2\nrounds = 3\nsmall_fixes = 0\n")
    low, high = "def clamp(x, lo, hi):\n    return max(lo, x)", "def clamp(x, lo, hi):\n    return min(x, hi)"
    fake = FakeModel([
        {"choices": [fence(low), fence(high)]},  # two near misses, each fixing one test
        {"choices": [fence(low), fence(low)]},  # asked to correct the first: sent back as it was, twice
        {"choices": [fence("def clamp(x, lo, hi):\n    return max(lo, min(x, hi))"), fence(low)]},
    ])
    proc = headless(workspace, fake, home, "Fix clamp")
    assert proc.returncode == 0, proc.stderr
    assert "is close" in fake.requests[1]["messages"][-1]["content"]
    third = fake.requests[2]["messages"][-1]["content"]
    assert "is close" not in third and "Here is the signature of `clamp`" in third  # regular, not the 2nd near miss
    assert "max(lo, min(x, hi))" in (workspace / "clamp.py").read_text()


def test_error_lines_keep_the_workspace_frames_with_their_code():
    from qcoder.agent.repair import _error_lines

    failure = ("tests/test_cli.py:27: in test_count\n    assert main(['--count', log]) == 0\n"
               "           ^^^^^^^^^^^^^^^^^^^^^^^^\ncli.py:18: in main\n    args = parser.parse_args(argv)\n"
               "/usr/lib/python3.11/argparse.py:1872: in parse_args\n    self.error(msg % ' '.join(argv))\n"
               "E   SystemExit: 2")
    assert _error_lines(failure) == ("tests/test_cli.py:27: in test_count\n    assert main(['--count', log]) == 0\n"
                                     "cli.py:18: in main\n    args = parser.parse_args(argv)\nE   SystemExit: 2")


def test_compared_values_reach_the_prompt_in_full_without_the_diff_that_repeats_them(tmp_path):
    from qcoder.agent.repair import _error_lines
    from qcoder.agent.testing import Tester
    from qcoder.agent.tools.shell import Shell

    (tmp_path / "test_mail.py").write_text(
        "def test_dedupe():\n    assert ['Ann@Example.com', 'ann@example.com', 'bob@x.org'] == "
        "['Ann@Example.com', 'bob@x.org']\n")
    report = Tester(tmp_path, "python -m pytest -q", Shell(tmp_path)).run()
    lines = _error_lines(report.failures["test_mail.py::test_dedupe"])
    # pytest's default shows `['Ann@Example..., 'bob@x.org'] == ['Ann@Example..., 'bob@x.org']`
    assert "['Ann@Example.com', 'ann@example.com', 'bob@x.org'] == ['Ann@Example.com', 'bob@x.org']" in lines
    assert "Full diff" not in lines and "Use -v" not in lines


def test_no_passing_candidate_hands_over_with_notes_and_a_fenced_reply_becomes_an_edit(workspace, home):
    project(workspace, candidates=2, rounds=2)
    fake = FakeModel([
        {"choices": [fence("def add(a, b):\n    return a * b"), {"content": "I am not sure."}]},
        {"choices": [fence("def add(a, b):\n    return b - a"), fence("def add(a, b):\n    return a * b")]},
        # The general loop: the model answers in prose with the fixed function in a fenced block.
        fence("def add(a, b):\n    return b + a", "The bug is in calc.py. Here's how you can fix it:\n\n"),
    ])
    proc = headless(workspace, fake, home, "Fix the failing test")
    assert proc.returncode == 0, proc.stderr
    second_round = fake.requests[1]["messages"][-1]["content"]  # a fresh start: the signature, not the buggy body
    assert "the signature of `add`" in second_round and "return a - b" not in second_round
    outline = "What else calc.py has (use it, do not rewrite it):\n```python\ndef mul(a, b): ...\n```"
    assert outline in second_round and outline in fake.requests[0]["messages"][-1]["content"]
    notes = fake.requests[2]["messages"][2]["content"]
    assert "test_add fails" in notes and "`add` in calc.py" in notes and "2 automatic rewrite(s)" in notes
    assert (workspace / "calc.py").read_text() == CALC.replace("a - b", "b + a")
    kinds = [e["type"] for e in events(proc)]
    assert "code_edit" in kinds
    assert events(proc)[-1]["reason"] == "applied the code from the reply; the tests pass"


def test_code_in_a_reply_that_then_calls_the_tests_is_the_edit_they_test(workspace, home):
    project(workspace, candidates=1)
    fake = FakeModel([
        {"choices": [{"content": "I am not sure."}]},
        # the 1.5B's habit: the corrected code in prose, then a fenced call of `test` to check it
        {"content": fence("def add(a, b):\n    return a + b", "To fix it, add instead of subtracting:\n\n")["content"]
         + "\nNow let's run the tests:\n\n```json\n{\"name\": \"test\", \"arguments\": {}}\n```\n"},
    ])
    proc = headless(workspace, fake, home, "Fix the failing test")
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "calc.py").read_text() == CALC.replace("a - b", "a + b")
    assert events(proc)[-1]["reason"] == "applied the code from the reply; the tests pass"
    assert "tool_call" not in [e["type"] for e in events(proc)]


def one_turn(workspace, home, edit: dict):
    """`qcoder -p` with a turn limit of 1: the repair path's one candidate is no code, the loop's one call is `edit`."""
    fake = FakeModel([{"choices": [{"content": "I am not sure."}]}, {"tool_calls": [call("edit", **edit)]}])
    try:
        proc = qcoder_cli(["-p", "Fix the failing tests", "-y", "--trust", "--output-format", "stream-json",
                           "--max-turns", "1"], workspace, fake, home)
    finally:
        fake.close()
    assert proc.returncode == 3, proc.stderr  # the turn limit
    return events(proc)


def test_a_run_that_ends_unfixed_undoes_edits_that_broke_a_passing_test(workspace, home):
    project(workspace, candidates=1)
    seen = one_turn(workspace, home, dict(path="calc.py", old_string="a * b", new_string="a ** b"))
    assert (workspace / "calc.py").read_text() == CALC
    undone = next(e for e in seen if e["type"] == "undone")
    assert undone["files"] == ["calc.py"] and "+    return a ** b" in undone["diff"]
    assert seen[-1]["reason"].endswith("its edits broke 1 test(s) that passed before (test_mul), so they were undone")
    assert seen[-1]["files_changed"] == []


def test_a_run_that_ends_unfixed_undoes_edits_that_fixed_nothing(workspace, home):
    project(workspace, candidates=1)
    seen = one_turn(workspace, home, dict(path="calc.py", old_string="a * b", new_string="b * a"))
    assert (workspace / "calc.py").read_text() == CALC
    assert seen[-1]["reason"].endswith("its edits made none of the 1 failing test(s) pass, so they were undone")


def test_a_run_that_ends_unfixed_keeps_edits_that_fixed_some_tests_and_broke_none(workspace, home):
    clamp_project(workspace, "candidates = 1\nrounds = 1\nsmall_fixes = 0\n")
    seen = one_turn(workspace, home, dict(path="clamp.py", old_string="return x", new_string="return max(x, lo)"))
    assert "return max(x, lo)" in (workspace / "clamp.py").read_text()  # test_low passes now, test_high not yet
    assert "undone" not in [e["type"] for e in seen] and seen[-1]["files_changed"] == ["clamp.py"]
    assert [e["summary"] for e in seen if e.get("phase") == "end"] == ["1 failed, 2 passed"]


def test_a_missing_function_is_written_and_verified(workspace, home):
    (workspace / "text.py").write_text('"""Text helpers."""\n\n\ndef shout(s):\n    return s.upper()\n')
    (workspace / "test_text.py").write_text(
        "from text import shout, slugify\n\n\ndef test_slugify():\n    assert slugify('Hello World') == 'hello-world'\n"
        "\n\ndef test_shout():\n    assert shout('a') == 'A'\n")
    fake = FakeModel([{"choices": [fence("""
        import re

        def slugify(text):
            return re.sub(r"\\W+", "-", text).strip("-").lower()

        print(slugify("Hello World"))
    """)]}])
    try:
        proc = qcoder_cli(["-p", "Add slugify", "-y", "--trust", "--output-format", "json"], workspace, fake, home)
    finally:
        fake.close()
    assert proc.returncode == 0, proc.stderr
    assert "does not exist yet" in fake.requests[0]["messages"][-1]["content"]
    text = (workspace / "text.py").read_text()
    assert text.startswith('"""Text helpers."""\n\nimport re\n') and "def shout" in text and "print(" not in text
    assert json.loads(proc.stdout)["test_result"]["summary"] == "2 passed"


def test_candidates_from_an_endpoint_that_ignores_n_are_topped_up_with_parallel_requests():
    from qcoder.client import OpenAIClient

    fake = FakeModel([{"content": "one"}, {"content": "two"}, {"content": "three"}])
    try:
        replies = OpenAIClient("fake", fake.url, "key").sample([{"role": "user", "content": "hi"}], 3, temperature=0.5)
    finally:
        fake.close()
    assert sorted(r.content for r in replies) == ["one", "three", "two"]
    assert fake.requests[0]["n"] == 3 and all("n" not in r for r in fake.requests[1:])


def test_a_rewrite_is_forced_to_keep_its_first_parameter():
    from qcoder.agent.localize import Suspect
    from qcoder.agent.repair import _reply_prefix

    method = Suspect("bank.py", "Bank.transfer", 10, 14, "    def transfer(self, source, target, amount):\n        pass\n")
    static = Suspect("bank.py", "Bank.rate", 16, 18, "    @staticmethod\n    def rate(x):\n        return x\n")
    plain = Suspect("calc.py", "add", 1, 2, "def add(a, b):\n    return a - b\n")
    assert _reply_prefix([method]) == "```python\ndef transfer(self"  # small models drop `self` otherwise
    assert _reply_prefix([static]) == "```python\n"  # decorated: the reply starts with the decorator
    # forced to end at `(`, the 1.5B wrote `checkout(plate, ...` for `checkout(ticket, ...` and dropped `lines`
    assert _reply_prefix([plain]) == "```python\ndef add(a"
    bare = Suspect("clock.py", "now", 1, 2, "def now():\n    return 0\n")
    assert _reply_prefix([bare]) == "```python\ndef now("
    documented = Suspect("text.py", "longest", 1, 3, 'def longest(text: str):\n    """The longest word."""\n    return ""\n')
    # a fresh start rewrites the body only: the parameters and the docstring stay as they were
    assert _reply_prefix([documented], fresh_start=True) == '```python\ndef longest(text: str):\n    """The longest word."""\n'
    assert _reply_prefix([plain], fresh_start=True) == "```python\ndef add(a, b):\n"


def test_the_prompt_outlines_what_else_the_module_defines():
    from qcoder.agent.repair import _outline

    module = '''"""Stock."""
from dataclasses import dataclass


class OutOfStock(Exception):
    def __init__(self, sku: str, wanted: int):
        super().__init__(sku)


@dataclass
class Line:
    sku: str
    quantity: int = 1


def total(lines: list[Line]) -> int:
    """How many items."""
    return sum(line.quantity for line in lines)


class Inventory:
    def remove(self, sku, quantity):
        pass


class Kind(Enum):
    A = "a"
'''
    # the imports, an exception's constructor, a data class's fields, a function's signature: what a rewrite must
    # not guess
    assert _outline(module, {"Inventory"}) == (
        "from dataclasses import dataclass\n\n"
        "class OutOfStock(Exception):\n    def __init__(self, sku: str, wanted: int): ...\n"
        "@dataclass\nclass Line:\n    sku: str\n    quantity: int = 1\n"
        "def total(lines: list[Line]): ...  # How many items.\n"
        "class Kind(Enum):\n    A = 'a'")


def test_a_candidate_that_does_not_parse_says_so(tmp_path):
    from qcoder.agent.repair import Repair

    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    repair = Repair(None)
    repair._root = tmp_path
    broken = repair._candidate(1, "```python\ndef add(a, b):\n    return a + b not\n```", ["calc.py"], "calc.py", [])
    assert (broken.status, broken.reason) == ("rejected", "the code does not parse: invalid syntax (line 2)")
    same = repair._candidate(2, "```python\ndef add(a, b):\n    return a - b\n```", ["calc.py"], "calc.py", [])
    assert (same.status, same.reason) == ("rejected", "no change (the code came back as it was)")


def test_rounds_past_the_minimum_run_only_while_the_time_limit_leaves_room_for_the_loop():
    import time
    from types import SimpleNamespace

    from qcoder.agent.repair import Repair, RepairSettings

    repair = Repair(None, RepairSettings(rounds=2, max_rounds=6, loop_share=0.25))
    now = time.monotonic()
    agent = lambda spent, limit=100.0: SimpleNamespace(limits=SimpleNamespace(timeout=limit),  # noqa: E731
                                                       started=now - spent)
    assert repair._another_round(agent(500.0), 0, now)  # the first round, whatever the clock says
    assert repair._another_round(agent(50.0), 1, now - 40)  # the minimum: 40 s a round fits in the 50 s left
    assert not repair._another_round(agent(70.0), 1, now - 40)  # ... but not in 30 s: it would overrun the limit
    assert repair._another_round(agent(500.0, limit=None), 1, now - 5)  # no time limit: the minimum
    assert repair._another_round(agent(10.0), 2, now - 20)  # 10 s a round, 90 s left: room for one more
    assert not repair._another_round(agent(70.0), 2, now - 20)  # 30 s left: one more round would eat the loop's
    assert not repair._another_round(agent(10.0), 6, now - 20)  # max_rounds
    assert not repair._another_round(agent(10.0, limit=None), 2, now - 20)  # no time limit: the minimum only


def test_each_round_takes_the_next_forks_of_its_prompt_and_samples_the_rest():
    from types import SimpleNamespace

    from qcoder.agent.repair import Repair, RepairSettings

    calls = []
    closest = 5  # the greedy reply and 5 forks: 6 replies in all

    def forks(messages, n, *, start, prefix, **_):
        calls.append(("forks", messages[-1]["content"], start, n))
        return [SimpleNamespace(content=f"fork {i}") for i in range(start, min(start + n, closest + 1))]

    def sample(messages, n, **_):
        calls.append(("sample", messages[-1]["content"], n))
        return [SimpleNamespace(content="sample")] * n

    client = SimpleNamespace(forks=forks, sample=sample, can_fork=lambda: True)
    repair = Repair(None, RepairSettings(candidates=6, forks=4))
    ask = lambda prompt: [r.content for r in repair._draw(client, [{"content": prompt}], prefix="```")]  # noqa: E731
    assert ask("fix it") == ["fork 0", "fork 1", "fork 2", "fork 3", "sample", "sample"]
    assert ask("from the signature") == ["fork 0", "fork 1", "fork 2", "fork 3", "sample", "sample"]  # its own
    assert ask("fix it") == ["fork 4", "fork 5"] + ["sample"] * 4  # the forks run out: samples make up for them
    assert ("forks", "fix it", 4, 4) in calls and ("sample", "fix it", 2) in calls
    plain = Repair(None, RepairSettings(candidates=2, forks=0))
    assert [r.content for r in plain._draw(client, [{"content": "x"}], prefix="")] == ["sample"] * 2
    client.can_fork = lambda: False  # an endpoint that cannot fork: one request for all
    assert [r.content for r in repair._draw(client, [{"content": "y"}], prefix="")] == ["sample"] * 6
    assert calls[-1] == ("sample", "y", 6)


def test_a_missing_capitalised_name_is_begun_as_a_class():
    from qcoder.agent.localize import Suspect
    from qcoder.agent.repair import _reply_prefix

    missing = lambda name: [Suspect("money.py", name, 0, 0, "", missing=True)]  # noqa: E731
    assert _reply_prefix(missing("CurrencyMismatch")) == "```python\nclass CurrencyMismatch"
    assert _reply_prefix(missing("to_cents")) == "```python\ndef to_cents("
    # a signature the task spells out is the new function's (ended at `(`, the 1.5B wrote `distance_km(geo, a, b)`)
    task = "Replace geo.haversine(lat1, lon1) with geo.distance_km(a, b) so that to_cents(5400) ..."
    assert _reply_prefix(missing("distance_km"), task=task) == "```python\ndef distance_km(a, b):\n"
    assert _reply_prefix(missing("to_cents"), task=task) == "```python\ndef to_cents("  # a call, not parameters
    assert _reply_prefix(missing("MAX_RETRIES")) == "```python\n"  # a constant: neither


def test_the_space_a_forced_def_prefix_leaves_is_taken_out():
    from qcoder.agent.repair import _heal

    assert _heal("```python\ndef longest_word( text ):\n    return f( x )\n") == \
        "```python\ndef longest_word(text):\n    return f( x )\n"
    wrapped = "```python\ndef add(\n    a,\n    b,\n):\n    pass\n"
    assert _heal(wrapped) == wrapped


def test_the_ask_names_every_missing_member_and_the_code_to_change_with_a_new_name():
    from qcoder.agent.localize import Suspect
    from qcoder.agent.repair import _ask

    cls = Suspect("matrix.py", "Matrix", 4, 9, "class Matrix:\n    pass")
    ask = _ask([Suspect("matrix.py", "Matrix.transpose", 0, 0, cls.source, True), cls,
                Suspect("matrix.py", "Matrix.T", 0, 0, cls.source, True)])
    assert ask.startswith("Add `transpose` and `T` to class `Matrix`")  # asked for one, small models write one
    ask = _ask([Suspect("money.py", "CurrencyMismatch", 0, 0, "", True),
                Suspect("ledger.py", "Ledger.add", 4, 9, "def add(self, m):\n    pass"), cls])
    assert ask.startswith("Write `CurrencyMismatch` for money.py, and change `Ledger.add` and `Matrix` as needed,")


def test_data_classes_a_test_builds_are_context_not_suspects(tmp_path):
    from qcoder.agent.localize import localize
    from qcoder.agent.testing import TestReport

    (tmp_path / "contacts.py").write_text(
        "import json\nfrom dataclasses import asdict, dataclass\n\n\n@dataclass\nclass Contact:\n    name: str\n\n\n"
        "class Book:\n    def __init__(self):\n        self.items = []\n\n\n"
        "def to_json(c):\n    return json.dumps(asdict(c))\n\n\ndef from_json(text):\n    return json.loads(text)\n")
    (tmp_path / "test_contacts.py").write_text(
        "from contacts import Book, Contact, from_json, to_json\n\n\ndef test_round_trip():\n"
        "    Book()\n    c = Contact('Ann')\n    assert from_json(to_json(c)) == c\n")
    test = "test_contacts.py::test_round_trip"
    report = TestReport("pytest", 1, "", {test: "failed"}, {test: "E   AssertionError"})
    lead = localize(report, tmp_path, ["contacts.py", "test_contacts.py"], [test])
    # Contact has no code of its own to fix (the outline shows its fields); Book has
    assert [s.name for s in lead.suspects] == ["Book", "from_json", "to_json"]


def test_a_one_statement_wrapper_is_followed_by_what_it_calls(tmp_path):
    from qcoder.agent.localize import localize
    from qcoder.agent.testing import TestReport

    # the test calls from_json and to_json, which only pass through: the bug is in from_dict
    (tmp_path / "playlist.py").write_text(
        "import json\n\n\nclass Playlist:\n    def __init__(self, seconds):\n        self.seconds = seconds\n\n"
        "    def to_dict(self):\n        return {'seconds': self.seconds}\n\n"
        "    @classmethod\n    def from_dict(cls, data):\n        return cls(data.get('duration', 0))\n\n"
        "    def to_json(self):\n        return json.dumps(self.to_dict())\n\n"
        "    @classmethod\n    def from_json(cls, text):\n        \"\"\"Parse.\"\"\"\n"
        "        return cls.from_dict(json.loads(text))\n\n\n"
        + "".join(f"def helper_{i}():\n    return {i}\n\n\n" for i in range(3)))
    (tmp_path / "test_playlist.py").write_text(
        "from playlist import Playlist, helper_0, helper_1, helper_2\n\n\ndef make():\n    return Playlist(5)\n\n\n"
        "def test_round_trip():\n    helper_0(), helper_1(), helper_2()\n"
        "    assert Playlist.from_json(make().to_json()).seconds == 5\n")
    test = "test_playlist.py::test_round_trip"
    failure = "test_playlist.py:10: in test_round_trip\n    assert Playlist.from_json(...).seconds == 5\nE   assert 0 == 5"
    lead = localize(TestReport("pytest", 1, "", {test: "failed"}, {test: failure}), tmp_path,
                    ["playlist.py", "test_playlist.py"], [test])
    assert [s.name for s in lead.suspects] == ["Playlist.from_json", "Playlist.from_dict", "Playlist.to_json",
                                              "Playlist.to_dict"]


def test_what_the_failing_line_calls_comes_before_the_tests_setup_among_the_suspects(tmp_path):
    from qcoder.agent.localize import MAX_SUSPECTS, localize
    from qcoder.agent.testing import TestReport

    setup = [f"make_{i}" for i in range(MAX_SUSPECTS)]
    (tmp_path / "lib.py").write_text("".join(f"def {name}():\n    return 1\n\n\n" for name in setup)
                                     + "def late(days):\n    return days + 1\n")
    (tmp_path / "test_lib.py").write_text(
        f"from lib import {', '.join(setup)}, late\n\n\ndef test_late():\n"
        + "".join(f"    {name}()\n" for name in setup) + "    assert late(1) == 1\n")
    test = "test_lib.py::test_late"
    failure = f"test_lib.py:{5 + MAX_SUSPECTS}: in test_late\n    assert late(1) == 1\nE   assert 2 == 1"
    lead = localize(TestReport("pytest", 1, "", {test: "failed"}, {test: failure}), tmp_path,
                    ["lib.py", "test_lib.py"], [test])
    assert [s.name for s in lead.suspects] == ["late", *setup[: MAX_SUSPECTS - 1]]


def test_a_short_class_a_test_builds_stands_for_its_methods_and_is_asked_for_whole(tmp_path):
    from qcoder.agent.localize import localize
    from qcoder.agent.repair import _ask, _reply_prefix
    from qcoder.agent.testing import TestReport

    # the bug is in the class body (one dict shared by every bus): shown its methods apart, the model rewrote them
    (tmp_path / "events.py").write_text(
        "class Bus:\n    handlers = {}\n\n    def on(self, event, handler):\n"
        "        self.handlers.setdefault(event, []).append(handler)\n\n"
        "    def emit(self, event):\n        return len(self.handlers.get(event, []))\n")
    (tmp_path / "test_events.py").write_text(
        "from events import Bus\n\n\ndef test_independent():\n    a, b = Bus(), Bus()\n"
        "    a.on('x', print)\n    assert b.emit('x') == 0\n")
    test = "test_events.py::test_independent"
    failure = ('test_events.py:7: in test_independent\n    assert b.emit("x") == 0\n'
               "events.py:8: in emit\n    return len(self.handlers.get(event, []))\nE   assert 1 == 0")
    lead = localize(TestReport("pytest", 1, "", {test: "failed"}, {test: failure}), tmp_path,
                    ["events.py", "test_events.py"], [test])
    assert [s.name for s in lead.suspects] == ["Bus"]
    assert _reply_prefix(lead.suspects) == "```python\nclass Bus"
    assert "Reply with the whole class" in _ask(lead.suspects)


def test_the_functions_called_beside_a_frame_are_suspects_and_shown_with_the_values_they_read(tmp_path):
    from qcoder.agent.localize import localize
    from qcoder.agent.repair import Repair, _prompt
    from qcoder.agent.testing import TestReport

    (tmp_path / "units.py").write_text(
        "SYMBOLS = {'C': 'C'}\n\n\ndef to_c(v, u):\n    if u == 'C':\n        return v\n    raise ValueError(u)\n\n\n"
        "def from_c(v, u):\n    if u == 'C':\n        return v\n    raise ValueError(u)\n\n\n"
        "def convert(v, a, b):\n    return from_c(to_c(v, a), b)\n\n\ndef label(u):\n    return SYMBOLS[u]\n")
    (tmp_path / "test_units.py").write_text("from units import convert\n\n\ndef test_k():\n    convert(0, 'C', 'K')\n")
    test = "test_units.py::test_k"
    failure = ("test_units.py:5: in test_k\nunits.py:17: in convert\n    return from_c(to_c(v, a), b)\n"
               "units.py:13: in from_c\n    raise ValueError(u)\nE   ValueError: K")
    lead = localize(TestReport("pytest", 1, "", {test: "failed"}, {test: failure}), tmp_path,
                    ["units.py", "test_units.py"], [test])
    # to_c returned, so no frame names it; but a unit from_c lacks, to_c lacks too
    assert [s.name for s in lead.suspects] == ["from_c", "convert", "to_c"]
    repair = Repair(None)
    repair._root = tmp_path
    lead.suspects.append(next(s for s in localize(  # a reader of a constant shows it as code to change with it
        TestReport("pytest", 1, "", {test: "failed"}, {test: "units.py:21: in label\nE   KeyError"}), tmp_path,
        ["units.py", "test_units.py"], [test]).suspects if s.name == "label"))
    prompt = _prompt("Add Kelvin.", lead, outlines=repair._outlines(lead), constants=repair._constants(lead))
    assert "```python\nSYMBOLS = {'C': 'C'}\n\n\ndef label(u):" in prompt and prompt.count("SYMBOLS = ") == 1


def test_a_near_miss_is_shown_back_with_the_code_its_still_failing_tests_reach(tmp_path):
    from qcoder.agent.localize import Lead, Suspect
    from qcoder.agent.repair import Candidate, Repair, _refine_prompt
    from qcoder.agent.testing import TestReport

    (tmp_path / "money.py").write_text("class Money:\n    def __init__(self, cents):\n        self.cents = cents\n")
    (tmp_path / "ledger.py").write_text(
        "from money import Money\n\n\nclass Ledger:\n    def __init__(self, currency):\n        self.currency = currency\n"
        "\n    def balance(self):\n        return Money(0)\n")
    (tmp_path / "test_ledger.py").write_text(
        "from ledger import Ledger\nfrom money import Money\n\n\ndef test_balance():\n"
        "    assert Ledger('USD').balance().currency == 'USD'\n")
    money = "class Money:\n    def __init__(self, cents, currency='EUR'):\n        self.cents = cents\n" \
            "        self.currency = currency\n"
    test = "test_ledger.py::test_balance"
    report = TestReport("pytest", 1, "", {test: "failed"}, {test: "E   AssertionError: assert 'EUR' == 'USD'"})
    near = Candidate(3, {"money.py": money}, money, status="failed", report=report)
    repair = Repair(None)
    repair._root, repair._python_files = tmp_path, ["money.py", "ledger.py"]
    reached = repair._reached(near)
    # Money is the near miss's own code; the short class Ledger stands for its method balance
    assert [s.name for s in reached] == ["Ledger"]
    lead = Lead([test], {}, {}, [Suspect("money.py", "Money", 1, 3, "")])
    prompt = _refine_prompt("Money carries its currency.", lead, near, lambda t: "", reached)
    assert "Those tests also reach `Ledger` in ledger.py:" in prompt and "return Money(0)" in prompt


def test_a_candidate_that_fixes_every_failing_test_but_breaks_one_is_a_near_miss_shown_with_what_it_broke():
    from qcoder.agent.localize import Lead, Suspect
    from qcoder.agent.repair import Candidate, _near_misses, _refine_prompt
    from qcoder.agent.testing import TestReport

    def report(*outcomes: str) -> TestReport:
        names = ("t.py::test_four", "t.py::test_nine", "t.py::test_range")
        states = dict(zip(names, outcomes, strict=True))
        return TestReport("pytest", 1, "", states,
                          {n: "E   Failed: DID NOT RAISE ValueError" for n, o in states.items() if o == "failed"})

    baseline = report("failed", "failed", "passed")
    half = Candidate(1, {}, "half", status="failed", report=report("passed", "failed", "passed"))
    broke = Candidate(2, {}, "def to_roman(n): ...", status="failed", report=report("passed", "passed", "failed"))
    worse = Candidate(3, {}, "worse", status="failed", report=report("failed", "failed", "failed"))
    none_gained = Candidate(4, {}, "swap", status="failed", report=report("passed", "failed", "failed"))
    assert _near_misses([worse, none_gained, broke, half], baseline) == [half, broke]  # no break first on a tie
    lead = Lead(["t.py::test_four", "t.py::test_nine"], {}, {}, [Suspect("roman.py", "to_roman", 1, 9, "")])
    prompt = _refine_prompt("Roman numerals.", lead, broke, lambda t: "def test_range(): ...")
    assert "Test test_range in t.py fails with it (it passed before):" in prompt
    assert "DID NOT RAISE ValueError" in prompt


def todo_suspects(tmp_path, todo: str, argv: str, line: int) -> list[str]:
    """The suspects localize names when test_todo.py's `main(argv)` exits 2 at line `line` of todo.py's main."""
    from qcoder.agent.localize import localize
    from qcoder.agent.testing import TestReport

    (tmp_path / "todo.py").write_text(todo)
    (tmp_path / "test_todo.py").write_text(f"from todo import main\n\n\ndef test_json():\n    main({argv})\n")
    test = "test_todo.py::test_json"
    report = TestReport("pytest", 1, "", {test: "failed"}, {test: f"todo.py:{line}: in main\nE   SystemExit: 2"})
    return [s.name for s in localize(report, tmp_path, ["todo.py", "test_todo.py"], [test]).suspects]


def test_the_handlers_a_suspect_dispatches_to_are_suspects_too(tmp_path):
    todo = ("import argparse\n\n\ndef helper():\n    return 1\n\n\ndef cmd_list(args):\n    print(helper())\n\n\n"
            "def main(argv=None):\n    p = argparse.ArgumentParser()\n    p.set_defaults(func=cmd_list)\n"
            "    helper()\n    args = p.parse_args(argv)\n    return args.func(args)\n")
    # helper is called (the outline shows it); cmd_list is where the new flag acts, and no traceback reaches it
    assert todo_suspects(tmp_path, todo, "['--json']", 16) == ["main", "cmd_list"]


def test_of_several_handlers_those_the_failing_test_names_are_suspects(tmp_path):
    todo = ("import argparse\n\n\ndef cmd_add(args):\n    pass\n\n\ndef cmd_list(args):\n    pass\n\n\n"
            "def main(argv=None):\n    p = argparse.ArgumentParser()\n    sub = p.add_subparsers()\n"
            "    sub.add_parser('add').set_defaults(func=cmd_add)\n    sub.add_parser('list').set_defaults(func=cmd_list)\n"
            "    args = p.parse_args(argv)\n    return args.func(args)\n")
    assert todo_suspects(tmp_path, todo, "['list', '--json']", 18) == ["main", "cmd_list"]  # `add` is not what runs


def test_a_class_shown_by_its_methods_alone_is_outlined_with_its_fields(tmp_path):
    from qcoder.agent.localize import Lead, Suspect
    from qcoder.agent.repair import Repair

    (tmp_path / "orders.py").write_text("from dataclasses import dataclass\n\n\n@dataclass\nclass Order:\n"
                                        "    order_id: str\n\n    def to_dict(self):\n        return {}\n")
    repair = Repair(None)
    repair._root = tmp_path
    method = Suspect("orders.py", "Order.to_dict", 8, 9, "    def to_dict(self):\n        return {}")
    outline = repair._outlines(Lead([], {}, {}, [method]))["orders.py"]
    assert "@dataclass\nclass Order:\n    order_id: str" in outline  # the fields a rewrite of to_dict must use
    whole = Suspect("orders.py", "Order", 4, 9, "")
    assert "class Order" not in repair._outlines(Lead([], {}, {}, [whole])).get("orders.py", "")



def test_what_a_suspect_uses_from_another_module_is_outlined(tmp_path):
    from qcoder.agent.localize import Lead, Suspect
    from qcoder.agent.repair import Repair, _prompt

    (tmp_path / "rates.py").write_text('def fee(minutes, hourly_rate):\n    """Price of a stay of `minutes`."""\n'
                                       "    return minutes\n\n\ndef unused(x):\n    return x\n")
    checkout = "def checkout(stay):\n    return fee(stay.total_seconds(), 2.5) + units.scale(1)\n"
    (tmp_path / "tickets.py").write_text(f"import units\nfrom rates import fee, unused\n\n\n{checkout}")
    (tmp_path / "units.py").write_text("def scale(x):\n    return x\n\n\ndef other():\n    pass\n")
    repair = Repair(None)
    repair._root, repair._python_files = tmp_path, ["rates.py", "tickets.py", "units.py"]
    lead = Lead([], {}, {}, [Suspect("tickets.py", "checkout", 5, 6, checkout)])
    outlines = repair._outlines(lead)
    # the callee's parameter names are the clue to a unit mismatch; what the suspect does not use is left out
    assert outlines["rates.py"] == "def fee(minutes, hourly_rate): ...  # Price of a stay of `minutes`."
    assert outlines["units.py"] == "def scale(x): ..."
    prompt = _prompt("Fix the fee.", lead, outlines=outlines)
    assert "What the code below uses from rates.py (use it, do not rewrite it)" in prompt
    assert "What else tickets.py has" in prompt

TODO = """import argparse
import json


def cmd_list(args):
    for title in ["milk", "tea"]:
        print(title)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list")
    listing.add_argument("--all", action="store_true")
    listing.set_defaults(func=cmd_list)
    args = parser.parse_args(argv)
    return args.func(args)
"""


def test_a_flag_the_tests_pass_is_declared_by_the_search_and_the_model_writes_what_it_does(workspace, home):
    (workspace / "todo.py").write_text(TODO)
    (workspace / "test_todo.py").write_text(
        "import json\n\nfrom todo import main\n\n\ndef test_text(capsys):\n    main(['list'])\n"
        "    assert capsys.readouterr().out == 'milk\\ntea\\n'\n\n\ndef test_json(capsys):\n"
        "    assert main(['list', '--json']) == 0\n    assert json.loads(capsys.readouterr().out) == ['milk', 'tea']\n")
    repair_settings(workspace, "candidates = 1\nrounds = 1\n")
    handler = """
        def cmd_list(args):
            titles = ["milk", "tea"]
            if args.json:
                print(json.dumps(titles))
                return 0
            for title in titles:
                print(title)
            return 0
        """
    fake = FakeModel([{"choices": [fence(handler)]}])  # only the handler: the flag is declared already
    proc = headless(workspace, fake, home, "Add a --json flag to list")
    assert proc.returncode == 0, proc.stderr
    written = (workspace / "todo.py").read_text()
    assert '    listing.add_argument("--json", action="store_true")\n' in written and "json.dumps(titles)" in written
    prompt = fake.requests[0]["messages"][-1]["content"]
    # main, which now declares the flag and hands the arguments on to cmd_list, is not shown: what is left is cmd_list
    assert 'The new option is declared now (`listing.add_argument("--json", action="store_true")`)' in prompt
    assert "Here is `cmd_list`, which must act on it" in prompt and "def main" not in prompt
    assert "unrecognized arguments" not in prompt  # the test's error is the one past argparse
    scaffold = next(e for e in events(proc) if e["type"] == "candidate")
    assert scaffold["index"] == 1 and "added `--json` to `listing`" in scaffold["reason"]
    assert len(fake.requests) == 1


def test_a_parser_that_declares_the_flag_stays_a_suspect_unless_it_hands_the_arguments_on():
    from qcoder.agent.localize import Lead, Suspect
    from qcoder.agent.repair import _past_the_parser

    def lead(main: str, *others: Suspect) -> Lead:
        return Lead([], {}, {}, [Suspect("cli.py", "main", 1, 3, main), *others])

    handler = Suspect("cli.py", "cmd_list", 5, 6, "def cmd_list(args):\n    return 0")
    helper = Suspect("cli.py", "matching", 5, 6, "def matching(lines):\n    return lines")
    before = "def main(argv):\n    p.set_defaults(func=cmd_list)\n    return matching(p.parse_args(argv))"
    after = before.replace("\n", "\n    p.add_argument('--json')\n", 1)
    assert [s.name for s in _past_the_parser(lead(after, handler), lead(before, handler)).suspects] == ["cmd_list"]
    # a function main calls is not where it hands the arguments on: main still has to act on the flag
    called = before.replace("set_defaults(func=cmd_list)", "x = 1")
    assert len(_past_the_parser(lead(called + "\n    p.add_argument('--json')", helper),
                                lead(called, helper)).suspects) == 2
    # nor is a parser the declaration did not change
    assert len(_past_the_parser(lead(before, handler), lead(before, handler)).suspects) == 2


def test_missing_options_are_declared_on_each_parser_as_a_switch_or_with_a_value():
    from qcoder.agent.small_fixes import missing_options

    def added(failures, tests=()):
        return [(f.description, f.text.splitlines()[f.line - 1].strip())
                for f in missing_options(TODO, 11, 18, failures, list(tests))]

    said = ["E   SystemExit: 2\n--- captured output ---\ntodo: error: unrecognized arguments: --json --top 3 --since=mon"]
    assert added(said)[:2] == [("added `--json` to `listing`", 'listing.add_argument("--json", action="store_true")'),
                               ("added `--json` to `parser`", 'parser.add_argument("--json", action="store_true")')]
    assert ("added `--top` to `listing`", 'listing.add_argument("--top", type=int)') in added(said)
    assert ("added `--since` to `listing`", 'listing.add_argument("--since")') in added(said)
    # stderr captured by the test itself (capsys): the options come from the test's arguments
    test = "def test_it(capsys, log):\n    main(['list', '--all', '--json', '--top', '3', '--by', log])\n"
    assert [line for _, line in added(["E   SystemExit: 2"], [test])][::2] == [
        'listing.add_argument("--json", action="store_true")', 'listing.add_argument("--top", type=int)',
        'listing.add_argument("--by", action="store_true")', 'listing.add_argument("--by")']  # `log`: either
    assert added(["E   AssertionError"], [test]) == []  # no exit from argparse: no option to add


def test_a_subcommand_parser_kept_in_no_variable_gets_one_and_a_repeated_option_appends():
    from qcoder.agent.small_fixes import missing_options

    source = TODO.replace(
        "    listing.set_defaults", '    commands.add_parser("show-all", help="everything")\n    listing.set_defaults')
    said = ["E   SystemExit: 2\ntodo: error: unrecognized arguments: --tag home --tag work"]
    fixes = {f.description: f.text for f in missing_options(source, 11, 19, said, [])}
    assert list(fixes) == ["added `--tag` to `show_all_parser`", "added `--tag` to `listing`",
                           "added `--tag` to `parser`"]
    assert ('    show_all_parser = commands.add_parser("show-all", help="everything")\n'
            '    show_all_parser.add_argument("--tag", action="append", default=[])\n') in fixes[
        "added `--tag` to `show_all_parser`"]
    compile(fixes["added `--tag` to `show_all_parser`"], "todo.py", "exec")
    # stderr captured by the test (capsys): the option comes from a helper's arguments, though another
    # subcommand's parser declares it (`add --all` here)
    test = "def test_it(capsys):\n    run(capsys, 'show-all', '--all', 'x', '--all', 'y')\n"
    fixes = {f.description: f.text for f in missing_options(source, 11, 19, ["E   SystemExit: 2"], [test])}
    assert '    show_all_parser.add_argument("--all", action="append", default=[])\n' in fixes[
        "added `--all` to `show_all_parser`"]


def test_a_new_function_one_token_from_passing_is_finished_by_the_search(workspace, home):
    (workspace / "words.py").write_text(
        '"""Words."""\n\n\ndef split_words(text):\n    return [w for w in text.split() if len(w) > 0]\n')
    (workspace / "test_words.py").write_text(
        "from words import join_words, split_words\n\n\ndef test_one():\n    assert join_words(['a']) == 'a'\n\n\n"
        "def test_two():\n    assert join_words(split_words('a b')) == 'ab'\n")
    repair_settings(workspace, "candidates = 1\nrounds = 1\n")
    fake = FakeModel([{"choices": [fence("def join_words(words):\n    return ' '.join(words)")]}])
    proc = headless(workspace, fake, home, "Add join_words")
    assert proc.returncode == 0, proc.stderr
    assert "def join_words(words):\n    return ''.join(words)\n" in (workspace / "words.py").read_text()
    # the code as it was (split_words, which test_two calls) gets no one-token search: join_words is missing
    (search,) = [e for e in events(proc) if e["type"] == "repair" and e["phase"] == "small_fixes"]
    assert search["candidate"] == 1 and search["fix"] == "words.py line 9: `' '` -> `''` of candidate 1"
    assert len(fake.requests) == 1


def test_the_file_a_candidate_fixed_is_kept_when_its_change_to_another_file_breaks_a_test(workspace, home):
    project(workspace, candidates=1)
    (workspace / "fmt.py").write_text("def show(x):\n    return str(x)\n")
    (workspace / "test_fmt.py").write_text("from fmt import show\n\n\ndef test_show():\n    assert show(1) == '1'\n")
    fake = FakeModel([{"choices": [{"content": (
        "# calc.py\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
        "# fmt.py\n```python\ndef show(x):\n    return repr(x) + '!'\n```\n")}]}])
    proc = headless(workspace, fake, home, "Fix the failing test")
    assert proc.returncode == 0, proc.stderr
    got = {e["index"]: e for e in events(proc) if e["type"] == "candidate"}
    assert got[1]["status"] == "failed" and got[1]["reason"].startswith("breaks test_show")
    assert got[2]["status"] == "passed" and got[2]["files"] == ["calc.py"]
    assert (workspace / "calc.py").read_text() == CALC.replace("a - b", "a + b")
    assert (workspace / "fmt.py").read_text() == "def show(x):\n    return str(x)\n"


def test_the_function_called_on_the_line_that_failed_inside_a_library_is_a_suspect(tmp_path):
    from qcoder.agent.localize import localize
    from qcoder.agent.testing import TestReport

    (tmp_path / "cli.py").write_text(
        "import argparse\n\n\ndef build_parser():\n    parser = argparse.ArgumentParser()\n"
        "    parser.add_argument('path')\n    return parser\n\n\n"
        "def main(argv=None):\n    args = build_parser().parse_args(argv)\n    return 0\n")
    (tmp_path / "test_cli.py").write_text("from cli import main\n\n\ndef test_flag():\n"
                                          "    assert main(['--short', 'a.txt']) == 0\n")
    test = "test_cli.py::test_flag"
    failure = ("test_cli.py:5: in test_flag\n    assert main(['--short', 'a.txt']) == 0\ncli.py:11: in main\n"
               "    args = build_parser().parse_args(argv)\n/usr/lib/python3.11/argparse.py:1872: in parse_args\n"
               "    self.error(msg % ' '.join(argv))\nE   SystemExit: 2")
    lead = localize(TestReport("pytest", 1, "", {test: "failed"}, {test: failure}), tmp_path,
                    ["cli.py", "test_cli.py"], [test])
    assert [s.name for s in lead.suspects] == ["main", "build_parser"]
    # a failure in the workspace's own code adds nothing called beside it: that line's values are not to blame
    own = failure.replace("/usr/lib/python3.11/argparse.py:1872: in parse_args\n    self.error(msg % ' '.join(argv))\n", "")
    lead = localize(TestReport("pytest", 1, "", {test: "failed"}, {test: own}), tmp_path, ["cli.py", "test_cli.py"], [test])
    assert [s.name for s in lead.suspects] == ["main"]


def test_a_signature_change_the_model_began_is_finished_in_every_caller(workspace, home):
    # The model writes the new function and leaves the old one and its callers (one in another file) alone
    (workspace / "geometry.py").write_text(
        "class Rect:\n    def __init__(self, w, h):\n        self.w, self.h = w, h\n\n\n"
        "def area(w, h):\n    \"\"\"w times h.\"\"\"\n    return w * h\n\n\n"
        "def doubled(r):\n    return 2 * area(r.w, r.h)\n")
    (workspace / "rooms.py").write_text(
        "from geometry import Rect, area\n\n\ndef floor(rooms):\n    return sum(area(r.w, r.h) for r in rooms)\n")
    (workspace / "test_geometry.py").write_text(
        "import geometry\nimport rooms\n\n\ndef test_surface():\n    assert geometry.surface(geometry.Rect(2, 3)) == 6\n\n\n"
        "def test_old_name_is_gone():\n    assert not hasattr(geometry, 'area')\n\n\n"
        "def test_floor():\n    assert rooms.floor([geometry.Rect(1, 2), geometry.Rect(2, 2)]) == 6\n")
    repair_settings(workspace, "candidates = 1\nrounds = 1\n")
    fake = FakeModel([{"choices": [fence('def surface(rect):\n    """The rectangle\'s area."""\n'
                                         "    return rect.w * rect.h")]}])
    proc = headless(workspace, fake, home, "Replace area(w, h) with surface(rect), which takes a Rect")
    assert proc.returncode == 0, proc.stderr
    geometry = (workspace / "geometry.py").read_text()
    assert "def area" not in geometry and "return 2 * surface(r)" in geometry and "def surface(rect):" in geometry
    assert (workspace / "rooms.py").read_text() == (
        "from geometry import Rect, surface\n\n\ndef floor(rooms):\n    return sum(surface(r) for r in rooms)\n")
    got = {e["index"]: e for e in events(proc) if e["type"] == "candidate"}
    assert got[1]["status"] == "failed" and "test_old_name_is_gone" in got[1]["reason"]
    assert got[2]["status"] == "passed" and got[2]["files"] == ["geometry.py", "rooms.py"]
    assert len(fake.requests) == 1


def test_a_signature_change_is_left_undone_where_a_call_does_not_map():
    from qcoder.agent.signature_change import signature_changes

    home = ("def dist(x1, y1, x2, y2):\n    return abs(x2 - x1) + abs(y2 - y1)\n\n\n"
            "def manhattan(a, b):\n    return abs(b[0] - a[0]) + abs(b[1] - a[1])\n")
    mapped = signature_changes({"m.py": home, "use.py": "from m import dist\nd = dist(p[0], p[1], q[0], q[1])\n"},
                               "m.py", "manhattan", {"dist", "manhattan", "m"})
    assert mapped == [("dist", {"m.py": home[home.index("def manhattan"):],
                                "use.py": "from m import manhattan\nd = manhattan(p, q)\n"})]
    assert signature_changes({"m.py": home}, "m.py", "manhattan", {"manhattan"}) == []  # the task names no old one
    # plain coordinates fit no template; the function passed as a value is not a call
    for use in ("d = dist(x, y, 0, 0)\n", "f = dist\n", "d = dist(*pts)\n"):
        assert signature_changes({"m.py": home, "use.py": "from m import dist\n" + use}, "m.py", "manhattan",
                                 {"dist"}) == []
    # bodies that differ in more than the parameters: no mapping at all
    other = home.replace("abs(b[1] - a[1])", "abs(b[1] - a[0])")
    assert signature_changes({"m.py": other}, "m.py", "manhattan", {"dist"}) == []


def test_new_members_are_asked_for_alone_and_merged_into_the_class():
    from qcoder.agent.fenced_edits import merge_python
    from qcoder.agent.localize import Suspect
    from qcoder.agent.repair import _ask, _reply_prefix

    source = ("@total_ordering\nclass Matrix(Base):\n    def __init__(self, rows):\n        self.rows = rows\n\n"
              "    def __repr__(self):\n        return f'Matrix({self.rows})'\n")
    suspects = [Suspect("matrix.py", "Matrix.transpose", 0, 0, source, True), Suspect("matrix.py", "Matrix", 1, 7, source)]
    prefix = _reply_prefix(suspects)
    assert prefix == ("```python\n@total_ordering\nclass Matrix(Base):\n    # (the methods it has stay as they are)\n\n")
    assert "only what you add" in _ask(suspects)
    reply = prefix + "    def transpose(self):\n        return Matrix(list(map(list, zip(*self.rows))))\n```"
    merged = merge_python(source, reply.split("```python\n")[1].rstrip("`"))
    assert merged == source + "\n    def transpose(self):\n        return Matrix(list(map(list, zip(*self.rows))))\n"
    # a class whose body starts on its own line is the only kind begun this way
    assert _reply_prefix([Suspect("m.py", "M.x", 0, 0, "class M: pass\n", True)]) == "```python\nclass M"
