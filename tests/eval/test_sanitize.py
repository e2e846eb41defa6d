"""The sanitizer on the kinds of answers models really give."""

import ast

from qcoder.eval.sanitize import extract_code, sanitize

PROMPT = 'from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    """Sum of xs."""\n'


def names(code: str) -> list[str]:
    return [getattr(n, "name", type(n).__name__) for n in ast.parse(code).body]


def run(code: str, call: str):
    namespace = {}
    exec(code, namespace)
    return eval(call, namespace)


def test_prose_around_one_block():
    text = "Sure! Here is the solution:\n\n```python\ndef add(xs):\n    return sum(xs)\n```\n\nIt sums the list."
    assert sanitize(text, "add") == "def add(xs):\n    return sum(xs)\n"


def test_several_blocks_keep_dependencies_drop_examples():
    text = ("First a helper:\n```python\nimport math\n\ndef helper(x):\n    return math.floor(x)\n```\n"
            "Then the function:\n```python\ndef add(xs):\n    return sum(helper(x) for x in xs)\n```\n"
            "Example:\n```python\nprint(add([1.5, 2.5]))\nassert add([]) == 0\n```\n")
    code = sanitize(text, "add")
    assert names(code) == ["Import", "helper", "add"]
    assert run(code, "add([1.5, 2.5])") == 3


def test_missing_closing_fence_and_unrelated_code():
    text = "```python\nimport os\n\ndef unused():\n    return 1\n\ndef add(xs):\n    return sum(xs)\n\nprint(add([1]))"
    code = sanitize(text, "add")
    assert names(code) == ["Import", "add"]


def test_no_fence_with_prose():
    text = "To solve this we loop over xs.\n\ndef add(xs):\n    total = 0\n    for x in xs:\n        total += x\n" \
           "    return total\n\nThis runs in linear time."
    assert run(sanitize(text, "add"), "add([1, 2, 3])") == 6


def test_main_block_and_test_code_dropped():
    text = ("```python\ndef add(xs):\n    return sum(xs)\n\nif __name__ == '__main__':\n    print(add([1]))\n\n"
            "assert add([2]) == 2\nadd([3])\n```")
    assert names(sanitize(text, "add")) == ["add"]


def test_redefined_helper_last_definition_wins():
    text = ("```python\ndef helper(x):\n    return 0\n\ndef add(xs):\n    return sum(map(helper, xs))\n\n"
            "def helper(x):\n    return x * 10\n```")
    code = sanitize(text, "add")
    assert code.count("def helper") == 1
    assert run(code, "add([1, 2])") == 30


def test_globals_and_decorators_reached_from_entry_point():
    text = ("```python\nimport functools\nLIMIT = 5\nOTHER = 7\n\n@functools.lru_cache(None)\n"
            "def add(xs):\n    return min(sum(xs), LIMIT)\n```")
    code = sanitize(text, "add")
    assert "LIMIT = 5" in code and "OTHER" not in code and "@functools.lru_cache" in code
    assert run(code, "add((4, 4))") == 5


def test_indented_body_without_def_line_uses_the_prompt():
    body = "    total = 0\n    for x in xs:\n        total += x\n    return total\n"
    code = sanitize(body, "add", PROMPT)
    assert "from typing import List" in code
    assert run(code, "add([4, 5])") == 9


def test_continuation_inside_a_fence():
    code = sanitize("```python\n    return sum(xs)\n```", "add", PROMPT)
    assert run(code, "add([1, 1])") == 2


def test_non_python_blocks_ignored():
    text = "```bash\npip install nothing\n```\n```python\ndef add(xs):\n    return sum(xs)\n```"
    assert extract_code(text).strip() == "def add(xs):\n    return sum(xs)"


def test_unknown_entry_point_keeps_all_definitions():
    code = sanitize("```python\nimport re\ndef a():\n    pass\nclass B:\n    pass\nprint(1)\n```", None)
    assert names(code) == ["Import", "a", "B"]
