"""Code in replies -> file contents; test runner detection; the one-line step display."""

import json

from qcoder.agent.display import ProseFilter, call_line, candidate_line, result_line
from qcoder.agent.fenced_edits import extract_blocks, merge_python, proposed_files
from qcoder.agent.testing import detect_test_command, is_test_file

MODULE = '''"""Shapes."""

import math


class Circle:
    def __init__(self, r):
        self.r = r

    def area(self):
        """Area of the circle."""
        return 2 * math.pi * self.r


def unit():
    return Circle(1)


if __name__ == "__main__":
    print(unit().area())
'''


def test_a_rewritten_method_replaces_the_old_one_and_keeps_its_docstring():
    new = merge_python(MODULE, "def area(self):\n    return math.pi * self.r ** 2\n")
    assert '        """Area of the circle."""\n        return math.pi * self.r ** 2\n' in new
    assert new.count("def area") == 1 and "def unit" in new


def test_new_definitions_go_before_main_and_new_imports_join_the_imports():
    new = merge_python(MODULE, "import json\n\ndef to_json(c):\n    return json.dumps({'r': c.r})\n\nprint(1)\n")
    assert new.index("import json") < new.index("class Circle")
    assert new.index("def to_json") < new.index('if __name__ == "__main__"')
    assert "print(1)" not in new
    copied = merge_python(MODULE, "from shapes import Circle\nfrom test_shapes import x\n\ndef unit():\n    return 1\n",
                          "geo.shapes")
    assert "import" not in copied.replace("import math", "")


def test_a_partial_class_merges_method_by_method():
    new = merge_python(MODULE, "class Circle:\n    def diameter(self):\n        return 2 * self.r\n")
    assert "def __init__" in new and "def area" in new and "    def diameter(self):\n        return 2 * self.r" in new
    assert new.index("def diameter") < new.index("def unit")


def test_invalid_or_empty_blocks_change_nothing():
    assert merge_python(MODULE, "def area(self:\n    return") is None
    assert merge_python(MODULE, "x = compute()\n") is None


def test_blocks_find_their_file_by_name_or_by_what_they_define():
    files = {"geo/shapes.py": MODULE, "notes.md": "# notes\nold\nlines\n", "test_shapes.py": "def test_x(): pass\n"}
    reply = ("In `shapes.py`:\n```python\ndef unit():\n    return Circle(2)\n```\n"
             "```markdown notes.md\n# notes\nnew\nlines\n```\n")
    blocks = extract_blocks(reply, list(files))
    assert [(b.path, b.named_in_fence) for b in blocks] == [("geo/shapes.py", False), ("notes.md", True)]
    out = proposed_files(reply, list(files), files.get)
    assert "return Circle(2)" in out["geo/shapes.py"] and out["notes.md"] == "# notes\nnew\nlines\n"
    unnamed = proposed_files("```python\ndef unit():\n    return Circle(3)\n```", list(files), files.get)
    assert list(unnamed) == ["geo/shapes.py"]
    assert proposed_files("```python\nprint('hello')\n```", list(files), files.get) == {}


def test_runner_detection(tmp_path):
    assert detect_test_command(tmp_path) is None
    (tmp_path / "go.mod").write_text("module x\n")
    assert detect_test_command(tmp_path) == "go test ./..."
    (tmp_path / "package.json").write_text(json.dumps({"scripts": {"test": "jest"}}))
    assert detect_test_command(tmp_path) == "npm test"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    assert detect_test_command(tmp_path) == "python -m pytest -q"
    assert is_test_file("pkg/tests/helpers.py") and is_test_file("a_test.go") and not is_test_file("src/app.py")


def test_steps_read_as_one_short_line():
    assert call_line("edit", json.dumps({"path": "a.py", "old_string": "x" * 500, "new_string": "y"})) == "edit a.py"
    assert result_line("read_file", "1| a\n2| b\n... (40 lines in all; read more with offset=3)") == "40 lines"
    assert result_line("edit", "Edited a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y") == "Edited a.py (+1 -1)"
    line = candidate_line({"index": 2, "status": "failed", "reason": "breaks test_b: AssertionError", "files": ["a.py"],
                           "added": 1, "removed": 1})
    assert line == "candidate 2: +1 -1 a.py -> breaks test_b: AssertionError"


def test_a_tool_call_printed_as_text_is_not_echoed():
    shown = []
    prose = ProseFilter(shown.append)
    for piece in ['{"name": "read', '_file", "arguments": {"path": "a.py"}}']:
        prose.feed(piece)
    assert prose.end("") == "" and shown == []
    for piece in ["The fix ", "is done."]:
        prose.feed(piece)
    assert prose.end("The fix is done.") == "The fix is done." and "".join(shown) == "The fix is done.\n"


def test_a_block_rewriting_functions_of_two_files_is_split_between_them():
    files = {
        "stats.py": "def mean(values):\n    return sum(values) / len(values)\n",
        "report.py": "from stats import mean\n\n\ndef line(name, values):\n    return f'{name}: {mean(values)}'\n",
    }
    reply = ("```python\ndef mean(values):\n    if not values:\n        return None\n    return sum(values) / len(values)\n\n"
             "def line(name, values):\n    m = mean(values)\n    return f'{name}: {\"n/a\" if m is None else m}'\n\n"
             "def header():\n    return 'report'\n```")
    out = proposed_files(reply, sorted(files), files.get)
    assert set(out) == {"stats.py", "report.py"}
    assert "if not values" in out["stats.py"] and "def line" not in out["stats.py"]
    # the caller stays where it lives (no shadowing copy of mean there); the new name joins the same file
    assert "def mean" not in out["report.py"] and "n/a" in out["report.py"] and "def header" in out["report.py"]


def test_a_constant_in_a_split_block_goes_to_the_file_that_binds_it():
    files = {
        "units.py": "def to_c(v, u):\n    return v\n\n\ndef from_c(v, u):\n    return v\n",
        "report.py": "SYMBOLS = {'C': 'C'}\n\n\ndef fmt(v, u):\n    return f'{v} {SYMBOLS[u]}'\n",
    }
    reply = ("```python\nSYMBOLS = {'C': 'C', 'K': 'K'}\n\n\ndef to_c(v, u):\n    return v - 273.15\n\n\n"
             "def from_c(v, u):\n    return v + 273.15\n\n\ndef fmt(v, u):\n    return f'{v:.2f} {SYMBOLS[u]}'\n```")
    out = proposed_files(reply, sorted(files), files.get)
    # units.py defines most of the block, but SYMBOLS is report.py's: replaced there, not added to units.py
    assert "SYMBOLS" not in out["units.py"] and "273.15" in out["units.py"]
    assert out["report.py"].count("SYMBOLS =") == 1 and "'K': 'K'" in out["report.py"] and ":.2f" in out["report.py"]


def test_a_name_from_a_sibling_module_is_imported_when_the_rewrite_uses_it():
    files = {
        "accounts.py": "class InsufficientFunds(Exception):\n    pass\n\n\nLIMIT = 10\n",
        "bank.py": '"""Banking."""\n\nfrom accounts import LIMIT\n\n\ndef move(a, n):\n    a.take(n)\n',
        "tests/test_bank.py": "class Helper:\n    pass\n",
    }
    reply = ("```python\ndef move(a, n):\n    if n > LIMIT:\n        raise InsufficientFunds(n)\n    helper = Helper()\n"
             "    a.take(n)\n```")
    out = proposed_files(reply, sorted(files), files.get)
    assert "from accounts import InsufficientFunds\n" in out["bank.py"]
    assert "Helper" not in out["bank.py"].split("def move")[0]  # names from tests are never imported
    assert out["bank.py"].index("from accounts import InsufficientFunds") < out["bank.py"].index("def move")


def test_a_standard_module_the_rewrite_uses_unimported_is_imported():
    files = {"todo.py": '"""Todos."""\n\nimport sys\n\n\ndef show(items):\n    print(items, file=sys.stderr)\n'}
    reply = "```python\ndef show(items, as_json=False):\n    print(json.dumps(items) if as_json else items)\n```"
    out = proposed_files(reply, sorted(files), files.get)["todo.py"]
    assert out.startswith('"""Todos."""\n\nimport sys\nimport json\n\n\ndef show(items, as_json=False):')
    unknown = "```python\ndef show(items):\n    print(yaml.dump(items))\n```"  # not in the standard library
    assert "import yaml" not in proposed_files(unknown, sorted(files), files.get)["todo.py"]


def test_a_rewritten_class_keeps_the_decorators_the_reply_left_out():
    old = "from dataclasses import dataclass\n\n\n@dataclass\nclass Order:\n    oid: str\n\n    def key(self):\n        return self.oid\n"
    new = merge_python(old, "class Order:\n    oid: str\n\n    def key(self):\n        return self.oid.upper()\n")
    assert new == old.replace("return self.oid", "return self.oid.upper()")


def test_a_new_name_goes_to_the_file_the_tests_import_it_from():
    files = {"money.py": "class Money:\n    pass\n", "ledger.py": "from money import Money\n\n\nclass Ledger:\n    pass\n"}
    reply = ("```python\nclass CurrencyMismatch(ValueError):\n    pass\n\n\nclass Ledger:\n    def add(self, m):\n"
             "        raise CurrencyMismatch(m)\n```")
    out = proposed_files(reply, sorted(files), files.get, homes={"CurrencyMismatch": "money.py"})
    # not into ledger.py, which the block's other class made its primary file: the tests import it from money
    assert "class CurrencyMismatch(ValueError)" in out["money.py"] and "class CurrencyMismatch" not in out["ledger.py"]
    assert "from money import CurrencyMismatch" in out["ledger.py"]  # and ledger.py imports it from there
