"""Turn a model's answer into the program to test (in the spirit of evalplus's sanitizer).

1. Code: the fenced blocks (an unclosed fence runs to the end), else the whole text; prose that
   does not parse is cut down to the longest run of lines that does.
2. If the entry point is not defined but the prompt is given, the code may be a HumanEval-style
   continuation (an indented body): prompt + code is tried.
3. `ast` keeps only the imports, the entry point and the functions, classes and globals it reaches
   (later definitions win, as when Python runs them); `__main__` blocks, prints and asserts go.
"""

from __future__ import annotations

import ast
import re

FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.#-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)
PYTHON_TAGS = ("", "python", "py", "python3", "py3")
MAX_SCAN_LINES = 400  # bound the quadratic prose-trimming search


def sanitize(text: str, entry_point: str | None = None, prompt: str | None = None) -> str:
    code = extract_code(text)
    if prompt and entry_point and not _defines(code, entry_point):
        for body in (_first_block_or_text(text), code):
            if _defines(prompt + body, entry_point):
                code = prompt + body
                break
    return select_definitions(code, entry_point)


def extract_code(text: str) -> str:
    blocks = [body for tag, body in FENCE.findall(text) if tag.lower() in PYTHON_TAGS]
    parsable = [b for b in blocks if _parses(b)]
    if parsable:
        return "\n".join(parsable)
    if blocks:  # fenced but broken: salvage what parses from the longest block
        return _longest_parsable(max(blocks, key=len))
    if _parses(text):
        return text
    return _longest_parsable(text)


def _first_block_or_text(text: str) -> str:
    """A continuation does not parse on its own, so it is taken as is: the first Python block, or all."""
    blocks = [body for tag, body in FENCE.findall(text) if tag.lower() in PYTHON_TAGS]
    return blocks[0] if blocks else text


def select_definitions(code: str, entry_point: str | None) -> str:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # nothing better to offer: let the test report the error
    lines = code.splitlines()
    imports, named = [], {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or _is_guarded_import(node):
            imports.append(node)
        for name in _defined_names(node):
            named[name] = node  # later definitions replace earlier ones
    if entry_point and entry_point in named:
        keep = _reachable(entry_point, named)
    else:
        keep = set(named.values())
    kept = [n for n in tree.body if n in keep or n in imports]
    return "\n".join(_source(n, lines) for n in kept) + "\n"


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(name in _defined_names(node) for node in tree.body)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _longest_parsable(text: str) -> str:
    lines = text.splitlines()[:MAX_SCAN_LINES]
    starts = [i for i, line in enumerate(lines) if line and not line[0].isspace()]
    best = ""
    for start in starts:
        for end in range(len(lines), start, -1):
            if end - start <= best.count("\n"):
                break
            chunk = "\n".join(lines[start:end]) + "\n"
            if _parses(chunk) and _has_definition(chunk):
                best = chunk
                break
    return best


def _has_definition(code: str) -> bool:
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in ast.parse(code).body)


def _is_guarded_import(node: ast.stmt) -> bool:
    """`try: import x / except ImportError: ...` at top level."""
    return isinstance(node, ast.Try) and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body)


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


def _reachable(entry_point: str, named: dict[str, ast.stmt]) -> set[ast.stmt]:
    keep, todo = set(), [entry_point]
    while todo:
        node = named.get(todo.pop())
        if node is None or node in keep:
            continue
        keep.add(node)
        todo.extend(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    return keep


def _source(node: ast.stmt, lines: list[str]) -> str:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[first - 1:node.end_lineno])
