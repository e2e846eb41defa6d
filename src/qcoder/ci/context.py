"""What the model sees for a change: the hunks, the functions that enclose changed lines (numbered as in the
new version, so that findings can cite lines), and the callers of changed functions found with a search."""

from __future__ import annotations

import ast
from pathlib import Path

from qcoder.agent.tools.search import grep_search
from qcoder.agent.tools.workspace import Workspace
from qcoder.ci.diff import Change, FileChange

MAX_CALLERS = 8
MAX_CONTEXT_CHARS = 24_000


def enclosing_functions(change: FileChange) -> list[tuple[str, int, int]]:
    """(name, first line, last line) of each function or method that holds an added line (Python only)."""
    if not change.path.endswith(".py") or change.new_text is None:
        return []
    try:
        tree = ast.parse(change.new_text)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if any(first <= n <= node.end_lineno for n in change.added):
                found.append((node.name, first, node.end_lineno))
    # Innermost functions are enough when nested ones both match.
    return [f for f in found if not any(o != f and o[1] >= f[1] and o[2] <= f[2] for o in found)]


def numbered(lines: list[str], first: int, last: int, marks: set[int] = frozenset()) -> str:
    return "\n".join(f"{n:>5}{'+' if n in marks else ' '}| {lines[n - 1]}" for n in range(first, last + 1))


def callers(repo: Path, name: str, defined_in: str) -> list[str]:
    hits = grep_search(Workspace(repo), rf"\b{name}\s*\(", ".", "*.py")
    if hits.startswith("No matches"):
        return []
    return [h for h in hits.splitlines()
            if not h.startswith("...") and f"def {name}" not in h and not h.startswith(f"{defined_in}:")][:MAX_CALLERS]


def build_context(repo: Path, change: Change) -> str:
    parts = []
    for f in change.files:
        if f.new_text is None:
            continue
        parts.append(f"### {f.path}\n```diff\n" + "\n".join(f.hunks) + "\n```")
        lines = f.lines
        functions = enclosing_functions(f)
        if functions:
            for name, first, last in functions:
                parts.append(f"Enclosing function `{name}` in {f.path} (new version; '+' marks changed lines):\n"
                             f"```\n{numbered(lines, first, last, f.added)}\n```")
                uses = callers(repo, name, f.path)
                if uses:
                    parts.append(f"Callers of `{name}`:\n" + "\n".join(uses))
        else:  # not Python, or changes outside functions: the changed lines with a little context
            spans = sorted(f.added)
            for n in spans[:200]:
                if n - 1 not in f.added:
                    last = n
                    while last + 1 in f.added:
                        last += 1
                    lo, hi = max(1, n - 3), min(len(lines), last + 3)
                    parts.append(f"{f.path} lines {lo}-{hi} (new version):\n```\n{numbered(lines, lo, hi, f.added)}\n```")
    text = "\n\n".join(parts)
    return text if len(text) <= MAX_CONTEXT_CHARS else text[:MAX_CONTEXT_CHARS] + "\n... (context truncated)"
