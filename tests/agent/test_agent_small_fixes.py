"""One-token fixes: each is one change of the suspect's lines, the rest of the file byte for byte as it was."""

import ast
import difflib

from qcoder.agent.small_fixes import small_fixes

SOURCE = '''import math

LIMIT = 10  # outside the suspect: never changed


def page(items, number: int = 1, size=10) -> list:
    """Items of 1-based page `number` (size 10 keeps the docstring's 10 and 1 alone)."""
    start = (number - 1) * size
    if start < 0 or not items:
        return []
    return items[start:start + size - 1]  # the comment stays


def label(ok):
    return "yes" + "!" if ok is True else "no"
'''


def changed_lines(old: str, new: str) -> list[str]:
    return [d for d in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            if d[:1] in "+-" and not d.startswith(("+++", "---"))]


def test_every_fix_changes_one_line_of_the_suspect_and_parses():
    fixes = small_fixes(SOURCE, 6, 11, limit=200)
    assert len(fixes) > 15
    for fix in fixes:
        ast.parse(fix.text)
        diff = changed_lines(SOURCE, fix.text)
        assert len(diff) == 2, (fix.description, diff)
        assert diff[0][1:].split("#")[0].strip() != diff[1][1:].split("#")[0].strip()
        assert 6 <= fix.line <= 11
        assert "Items of 1-based page" in fix.text and "LIMIT = 10  #" in fix.text
        if "# the comment stays" in diff[0]:
            assert "# the comment stays" in diff[1]
    assert len({f.text for f in fixes}) == len(fixes)


def test_the_common_one_token_bugs_are_among_the_fixes():
    texts = {f.text for f in small_fixes(SOURCE, 6, 11, limit=200)}
    for old, new in [("start + size - 1]", "start + size]"),  # off by one in a bound
                     ("start < 0", "start <= 0"),  # a boundary
                     ("(number - 1)", "(number + 1)"),  # an operator
                     ("or not items", "and not items"),  # and/or
                     ("or not items", "or items"),  # a negation too many
                     ("size=10", "size=9")]:  # a default
        assert SOURCE.replace(old, new) in texts, (old, new)
    assert "def page(items, number: int = 0, size=10)" in "".join(texts)  # defaults are code too
    assert not any("size 11" in t or "and 0 alone" in t for t in texts)  # docstrings are not


def test_a_function_or_method_is_tried_as_its_counterpart():
    source = ("def longest(words, prefix):\n"
              "    kept = [w.lstrip() for w in words if w.startswith(prefix)]\n"
              "    return min(kept, key=len)\n")
    texts = {f.text for f in small_fixes(source, 1, 3, limit=200)}
    for old, new in [("min(", "max("), (".lstrip()", ".rstrip()"), (".lstrip()", ".strip()"),
                     (".startswith(", ".endswith(")]:
        assert source.replace(old, new) in texts, (old, new)
    assert not any("lmin" in t or "def longest(words, prefix):" not in t for t in texts)


def test_fixes_on_the_traceback_line_come_first_and_strings_are_not_subtracted():
    first = small_fixes(SOURCE, 6, 11, focus=(11,))[0]
    assert first.line == 11
    label = small_fixes(SOURCE, 14, 15, limit=200)
    assert not any('"yes" - "!"' in f.text for f in label)
    assert any("ok is not True" in f.text for f in label)


def test_code_that_does_not_parse_gives_no_fixes():
    assert small_fixes("def f(:\n    pass\n", 1, 2) == []


def test_a_missing_name_close_to_a_defined_one_becomes_a_rename_everywhere_but_in_strings_and_comments():
    from qcoder.agent.small_fixes import renames

    sources = {"store.py": "def get_usr(uid):\n    return {'id': uid, 'via': 'get_usr'}  # get_usr: old\n\n\nCACHE = get_usr\n",
               "app.py": "from store import get_usr\n\n\ndef show(uid):\n    return get_usr(uid)['id']\n",
               "other.py": "x = 1\n"}
    old, changed = renames("get_user", "store.py", sources)
    assert old == "get_usr" and sorted(changed) == ["app.py", "store.py"]
    assert changed["store.py"] == ("def get_user(uid):\n    return {'id': uid, 'via': 'get_usr'}  # get_usr: old\n\n\n"
                                   "CACHE = get_user\n")
    assert changed["app.py"] == "from store import get_user\n\n\ndef show(uid):\n    return get_user(uid)['id']\n"
    assert renames("MAX_RETRIES", "settings.py", {"settings.py": "MAX_RETRY = 3\nTIMEOUT = 5\n"})[0] == "MAX_RETRY"
    assert renames("frobnicate", "store.py", sources) is None


def test_a_rename_in_strings_too_keeps_each_string_s_case_and_whole_words():
    from qcoder.agent.small_fixes import renamed

    text = ('import os\n\nMAX_RETRY = int(os.environ.get("APP_MAX_RETRY", "3"))  # MAX_RETRY\n'
            'REPORT = {"max_retry": MAX_RETRY, "max_retry_delay": 1, "MAX_RETRYX": 2}\n'
            'DOC = """Max_Retry\nis MAX_RETRY"""\n')
    assert renamed(text, "MAX_RETRY", "MAX_RETRIES", strings=True) == (
        'import os\n\nMAX_RETRIES = int(os.environ.get("APP_MAX_RETRIES", "3"))  # MAX_RETRY\n'
        'REPORT = {"max_retries": MAX_RETRIES, "max_retries_delay": 1, "MAX_RETRYX": 2}\n'
        'DOC = """MAX_RETRIES\nis MAX_RETRIES"""\n')
    assert renamed(text, "MAX_RETRY", "MAX_RETRIES") == text.replace("MAX_RETRY =", "MAX_RETRIES =").replace(
        ": MAX_RETRY,", ": MAX_RETRIES,")


def test_a_separator_string_is_tried_as_the_other_common_separators():
    source = 'def show(parts):\n    label = f"{parts[0]}: "\n    return " ".join(parts) + label\n'
    texts = {f.text for f in small_fixes(source, 1, 3, limit=200)}
    for new in ('"".join', '",".join', '", ".join'):
        assert source.replace('" ".join', new) in texts, new
    assert all(']}: "' in t for t in texts)  # an f-string's text is left alone


def test_values_that_differ_only_in_whitespace_get_what_is_collected_or_returned_stripped():
    from qcoder.agent.small_fixes import trimmed_values

    source = ("def dedupe(emails):\n    seen, out = set(), []\n    for email in emails:\n"
              "        key = email.strip().lower()\n        if key not in seen:\n            seen.add(key)\n"
              "            out.append(email)\n    return out\n")
    failure = ["E   AssertionError: assert ['  Zoe@Mail.net '] == ['Zoe@Mail.net']"]
    fixes = trimmed_values(source, 1, 8, failure)
    assert [f.description for f in fixes] == ["line 6: `key` -> `key.strip()`", "line 7: `email` -> `email.strip()`",
                                              "line 8: `out` -> `out.strip()`"]
    assert "            out.append(email.strip())\n" in fixes[1].text and fixes[1].text.count(".strip()") == 2
    namespace = {}
    exec(fixes[1].text, namespace)
    assert namespace["dedupe"](["  Zoe@Mail.net ", "zoe@mail.net"]) == ["Zoe@Mail.net"]
    # values that differ in more than whitespace, or no compared values at all: nothing to strip
    assert trimmed_values(source, 1, 8, ["E   AssertionError: assert ['zoe@mail.net'] == ['Zoe@Mail.net']"]) == []
    assert trimmed_values(source, 1, 8, ["E   KeyError: 'x'"]) == []
    # whitespace inside a value is a separator's business, not input kept untrimmed
    assert trimmed_values(source, 1, 8, ["E   AssertionError: assert '1h 30m' == '1h30m'"]) == []


def test_a_call_that_returns_none_is_not_returned_in_place_of_the_status():
    from qcoder.agent.small_fixes import returned_none

    source = ("import json\n\n\ndef cmd_list(args):\n    if args.json:\n        return print(json.dumps([1]))\n"
              "    for x in [1]:\n        print(x)\n    return 0\n")
    fixes = returned_none(source, 4, 9)
    assert [f.description for f in fixes] == ["line 6: `return print(...)` -> `print(...)` and `return 0`"]
    assert "        print(json.dumps([1]))\n        return 0\n    for x" in fixes[0].text
    assert returned_none(source.replace("return print", "return str"), 4, 9) == []


def test_blank_entries_the_expected_list_lacks_are_not_collected_and_both_value_fixes_combine():
    from qcoder.agent.small_fixes import evident_fixes, skipped_blanks

    source = ("def dedupe(emails):\n    seen, out = set(), []\n    for email in emails:\n"
              "        if email.strip().lower() not in seen:\n            seen.add(email.strip().lower())\n"
              "            out.append(email)\n    return out\n")
    blank = "E   AssertionError: assert ['', 'a@b.c'] == ['a@b.c']"
    spaces = "E   AssertionError: assert ['  Zoe@Mail.net '] == ['Zoe@Mail.net']"
    [guard] = skipped_blanks(source, 1, 7, [blank])
    assert "            if email:\n                out.append(email)\n" in guard.text
    assert skipped_blanks(source, 1, 7, [spaces]) == [] and skipped_blanks(source, 1, 7, ["E   assert 1 == 2"]) == []
    fixes = evident_fixes(source, 1, 7, [spaces, blank])
    assert fixes[0].kind == "strip+blank"  # either alone leaves one of the two tests failing
    namespace = {}
    exec(fixes[0].text, namespace)
    assert namespace["dedupe"](["", "   ", "a@b.c", "  Zoe@Mail.net ", "zoe@mail.net"]) == ["a@b.c", "Zoe@Mail.net"]


def test_values_that_differ_in_inner_whitespace_put_the_separator_fixes_first():
    from qcoder.agent.small_fixes import evident_fixes

    source = ('def format_duration(s):\n    parts = []\n    if s >= 3600:\n        parts.append(f"{s // 3600}h")\n'
              '    if s % 3600:\n        parts.append(f"{s % 3600 // 60}m")\n    return " ".join(parts)\n')
    fixes = evident_fixes(source, 1, 7, ["E   AssertionError: assert '1h 30m' == '1h30m'"])
    assert [f.description for f in fixes] == ['line 7: `" "` -> `""`', 'line 7: `" "` -> `","`',
                                              'line 7: `" "` -> `", "`']
    assert evident_fixes(source, 1, 7, ["E   AssertionError: assert '1h 30m' == '1h 31m'"]) == []


def test_split_on_one_space_is_tried_as_split_on_any_whitespace():
    source = 'def initials(name):\n    return "".join(p[0] for p in name.split(" "))\n'
    texts = {f.text for f in small_fixes(source, 1, 2, limit=200)}
    assert source.replace('name.split(" ")', "name.split()") in texts


def test_an_exception_that_escaped_the_handler_meant_for_it_is_named_there_and_imported(tmp_path):
    import subprocess
    import sys

    from qcoder.agent.small_fixes import evident_fixes

    source = ("from decimal import Decimal\n\n\ndef parse(text):\n    try:\n        return Decimal(text)\n"
              "    except ValueError:\n        raise ValueError(f'bad amount {text!r}') from None\n")
    failure = ("    return Decimal(text)\nE   decimal.InvalidOperation: [<class 'decimal.ConversionSyntax'>]\n"
               "E   Left contains one more item: 'x'")
    fixes = evident_fixes(source, 4, 8, [failure])
    assert [f.description for f in fixes] == ["line 7: `except ValueError` -> `except InvalidOperation`",
                                              "line 7: `except ValueError` -> `except (ValueError, InvalidOperation)`"]
    for fix in fixes:  # each one runs, and turns the escaped exception into the one the caller handles
        (tmp_path / "amounts.py").write_text(fix.text)
        check = "import amounts\ntry:\n    amounts.parse('abc')\nexcept ValueError as e:\n    print(e)\n"
        run = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True)
        assert run.stdout.strip() == "bad amount 'abc'", run.stderr
    # a builtin needs no import; the handler that names it already, and a test's own verdict, give nothing
    keyed = "def get(d, k):\n    try:\n        return d[k]\n    except (IndexError, TypeError):\n        return None\n"
    fixes = evident_fixes(keyed, 1, 5, ["E   KeyError: 'k'"])
    assert [f.text for f in fixes][1] == keyed.replace("(IndexError, TypeError)", "(IndexError, TypeError, KeyError)")
    assert evident_fixes(keyed, 1, 5, ["E   TypeError: x", "E   AssertionError: assert 1 == 2"]) == []
    # an exception of another project module that this one does not import is left to the model
    assert evident_fixes(source, 4, 8, ["E   money.CurrencyError: EUR"]) == []


def test_a_parameter_compared_is_tried_as_each_other_parameter():
    source = ("def overlapping(bookings, start, end):\n"
              "    return [b for b in bookings if b.start < end and b.end > end]\n")
    texts = {f.text for f in small_fixes(source, 1, 2, limit=200)}
    assert source.replace("b.end > end", "b.end > start") in texts
    assert source.replace("b.start < end", "b.start < start") in texts


def test_mutable_state_in_a_class_body_is_made_per_instance(tmp_path):
    import subprocess
    import sys

    from qcoder.agent.small_fixes import evident_fixes

    source = ("class Bus:\n    handlers: dict = {}\n\n    def on(self, event, handler):\n"
              "        self.handlers.setdefault(event, []).append(handler)\n")
    (fix,) = evident_fixes(source, 1, 5, [])
    assert fix.description == "line 2: `handlers` of class `Bus` made per instance, in `__init__`"
    assert fix.text == ("class Bus:\n    def __init__(self):\n        self.handlers: dict = {}\n\n"
                        "    def on(self, event, handler):\n        self.handlers.setdefault(event, []).append(handler)\n")
    with_init = "class Cart:\n    items = []\n\n    def __init__(self, owner):\n        '''A cart.'''\n        self.owner = owner\n"
    (fix,) = evident_fixes(with_init, 1, 6, [])
    assert "        '''A cart.'''\n        self.items = []\n        self.owner = owner\n" in fix.text
    (tmp_path / "cart.py").write_text(fix.text)
    check = "from cart import Cart\na, b = Cart('a'), Cart('b')\na.items.append(1)\nprint(b.items)\n"
    run = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True)
    assert run.stdout.strip() == "[]", run.stderr
    # a data class, and a constant of the class, are left alone
    assert evident_fixes("from dataclasses import dataclass\n\n\n@dataclass\nclass P:\n    x: int = 0\n", 1, 6, []) == []
    assert evident_fixes("class K:\n    LIMIT = 3\n    NAMES = ('a', 'b')\n", 1, 3, []) == []


def test_a_method_a_test_reads_as_a_value_is_made_a_property(tmp_path):
    from pathlib import Path

    from qcoder.agent.small_fixes import evident_fixes
    from qcoder.agent.testing import Tester
    from qcoder.agent.tools.shell import Shell

    source = ("class Box:\n    def __init__(self, w, h):\n        self.w, self.h = w, h\n\n"
              "    def area(self):\n        return self.w * self.h\n\n    def scaled(self, k):\n"
              "        return Box(self.w * k, self.h * k)\n")
    (tmp_path / "box.py").write_text(source)
    (tmp_path / "test_box.py").write_text("from box import Box\n\n\ndef test_area():\n    assert Box(2, 3).area == 6\n")
    tester = Tester(Path(tmp_path), "python -m pytest -q", Shell(Path(tmp_path)))
    report = tester.run()  # pytest's own words for the failure: `where area = <Box object>.area`
    (fix,) = evident_fixes(source, 1, 9, list(report.failures.values()))
    assert fix.description == "line 5: `area` made a property (a test reads it as a value)"
    assert "    @property\n    def area(self):\n" in fix.text
    assert tester.run({"box.py": fix.text}).ok
    # a method the tests call, or one that takes arguments, is left alone
    called = "E       assert 5 == 6\nE        +  where 5 = area()"
    assert evident_fixes(source, 1, 9, [called]) == []
    assert evident_fixes(source, 1, 9, ["E        +  where scaled = Box(2, 3).scaled"]) == []
