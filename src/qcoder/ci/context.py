"""What the model sees of a change: one review unit per changed function (or per run of changed lines outside
any function), each numbered as in the new version with the replaced old lines shown where they stood, plus
the callers of a changed function found with a search. A small model reviews one short unit far better than a
whole diff at once, and the old line beside the new one is what shows it the change."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from qcoder.agent.tools.search import grep_search
from qcoder.agent.tools.workspace import Workspace
from qcoder.ci.diff import Change, FileChange

MAX_CALLERS = 8
MAX_UNIT_LINES = 120  # a longer function is shown around its changed lines only
CONTEXT_LINES = 3
MAX_LINE_CHARS = 400  # minified or generated lines are cut: the unit must fit the model's context


@dataclass
class Unit:
    path: str
    first: int  # the new-version lines shown, inclusive
    last: int
    title: str  # "function `clamp`" or "lines 10-14"
    code: str  # the numbered lines
    callers: list[str]

    def render(self) -> str:
        text = f"```\n{self.code}\n```"
        if self.callers:
            text += "\nCallers of the function:\n```\n" + "\n".join(self.callers) + "\n```"
        return text


def touched_lines(change: FileChange) -> set[int]:
    """New-version lines added or modified, and the lines that now stand where old lines were deleted."""
    count = len(change.lines)
    return set(change.added) | {min(max(n, 1), count) for n in change.removed if count}


def enclosing_functions(change: FileChange) -> list[tuple[str, int, int]]:
    """(name, first line, last line) of each function or method that holds a touched line (Python only)."""
    if not change.path.endswith(".py") or change.new_text is None:
        return []
    try:
        tree = ast.parse(change.new_text)
    except SyntaxError:
        return []
    touched = touched_lines(change)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if any(first <= n <= node.end_lineno for n in touched):
                found.append((node.name, first, node.end_lineno))
    # Innermost functions are enough when nested ones both match.
    return [f for f in found if not any(o != f and o[1] >= f[1] and o[2] <= f[2] for o in found)]


def numbered(change: FileChange, first: int, last: int) -> str:
    """Lines first..last of the new version as `   12 | code`, changed ones as `   12+| code`, and each
    deleted or replaced old line as `     -| code` just before the line that now stands in its place."""
    lines, out = change.lines, []
    for n in range(first, last + 1):
        out += [f"{'':>5}-| {old[:MAX_LINE_CHARS]}" for old in change.removed.get(n, [])]
        out.append(f"{n:>5}{'+' if n in change.added else ' '}| {lines[n - 1][:MAX_LINE_CHARS]}")
    return "\n".join(out)


def callers(repo: Path, name: str, defined_in: str) -> list[str]:
    hits = grep_search(Workspace(repo), rf"\b{name}\s*\(", ".", "*.py")
    if hits.startswith("No matches"):
        return []
    return [h for h in hits.splitlines()
            if not h.startswith("...") and f"def {name}" not in h and not h.startswith(f"{defined_in}:")][:MAX_CALLERS]


def _runs(lines: set[int]) -> list[tuple[int, int]]:
    """Consecutive runs of line numbers, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for n in sorted(lines):
        if runs and n <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _spans(touched: set[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """The touched lines within lo..hi, each run widened by a few lines of context, overlapping ones joined,
    and long ones cut into pieces of MAX_UNIT_LINES (a new file is one long run)."""
    widened = set()
    for first, last in _runs({n for n in touched if lo <= n <= hi}):
        widened |= set(range(max(lo, first - CONTEXT_LINES), min(hi, last + CONTEXT_LINES) + 1))
    return [(a, min(b, a + MAX_UNIT_LINES - 1)) for first, last in _runs(widened)
            for a, b in [(start, last) for start in range(first, last + 1, MAX_UNIT_LINES)]]


def review_units(repo: Path, change: Change) -> list[Unit]:
    units = []
    for f in change.files:
        if f.new_text is None or not f.lines:
            continue
        touched = touched_lines(f)
        inside = set()
        for name, first, last in enclosing_functions(f):
            inside |= set(range(first, last + 1))
            spans = [(first, last)] if last - first < MAX_UNIT_LINES else _spans(touched, first, last)
            uses = callers(repo, name, f.path)
            units += [Unit(f.path, a, b, f"function `{name}`", numbered(f, a, b), uses) for a, b in spans]
        # Outside functions, added blank lines alone (the spacing around a new function) are nothing to review.
        rest = {n for n in touched - inside if f.lines[n - 1].strip() or n in f.removed}
        for a, b in _spans(rest, 1, len(f.lines)):
            units.append(Unit(f.path, a, b, f"lines {a}-{b}", numbered(f, a, b), []))
    return units
