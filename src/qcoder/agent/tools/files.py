"""File tools: read_file, write_file, edit, list_directory (names as in Qwen Code)."""

from __future__ import annotations

import difflib
import re

from qcoder.agent.tools.base import Tool, ToolError
from qcoder.agent.tools.workspace import SKIP_DIRS, Workspace

MAX_FILE_BYTES = 5_000_000
DEFAULT_LIMIT = 500
MAX_LINE_CHARS = 2000


def _read_text(ws: Workspace, path: str):
    target = ws.resolve(path)
    if not target.exists():
        raise ToolError(f"file not found: {path}")
    if target.is_dir():
        raise ToolError(f"{path} is a directory; use list_directory")
    if target.stat().st_size > MAX_FILE_BYTES:
        raise ToolError(f"{path} is {target.stat().st_size} bytes, too large to read whole; use grep_search")
    data = target.read_bytes()
    if b"\0" in data[:8192]:
        raise ToolError(f"{path} is a binary file")
    return target, data.decode("utf-8", errors="replace")


def read_file(ws: Workspace, path: str, offset: int = 1, limit: int = DEFAULT_LIMIT) -> str:
    _, text = _read_text(ws, path)
    lines = text.splitlines()
    start = max(int(offset), 1)
    chunk = lines[start - 1:start - 1 + max(int(limit), 1)]
    width = len(str(start + len(chunk)))
    body = "\n".join(f"{n:>{width}}| {line[:MAX_LINE_CHARS]}" for n, line in enumerate(chunk, start))
    if not lines:
        return f"({path} is empty)"
    end = start + len(chunk) - 1
    if end < len(lines):
        body += f"\n... ({len(lines)} lines in all; read more with offset={end + 1})"
    return body


def write_file(ws: Workspace, path: str, content: str) -> str:
    target = ws.resolve(path)
    if target.is_dir():
        raise ToolError(f"{path} is a directory")
    old = target.read_text(errors="replace") if target.exists() else None
    if old is not None:
        _check_python(target, old, content)
    ws.write(target, content)
    if old is None:
        return f"Created {ws.rel(target)} ({len(content.splitlines())} lines)"
    return f"Wrote {ws.rel(target)}\n{_diff(old, content, ws.rel(target))}"


def edit(ws: Workspace, path: str, old_string: str, new_string: str) -> str:
    target, text = _read_text(ws, path)
    if old_string == "":
        raise ToolError("old_string is empty; to create or overwrite a whole file use write_file")
    if old_string == new_string:
        raise ToolError("old_string and new_string are identical; nothing to change")
    count = text.count(old_string)
    if count == 0 and _strip_line_numbers(old_string) != old_string:  # copied from read_file, numbers and all
        old_string, new_string = _strip_line_numbers(old_string), _strip_line_numbers(new_string)
        count = text.count(old_string)
    if count == 1:
        new_text = text.replace(old_string, new_string)
    elif count > 1:
        starts, pos = [], text.find(old_string)
        while pos != -1:
            starts.append(text.count("\n", 0, pos) + 1)
            pos = text.find(old_string, pos + 1)
        raise ToolError(f"old_string occurs {count} times in {path} (at lines {', '.join(map(str, starts))}); "
                        "include more surrounding lines so it matches exactly once")
    else:
        new_text = _whitespace_tolerant_replace(text, old_string, new_string)
        if new_text is None:
            raise ToolError(f"old_string was not found in {path}. {_closest(text, old_string)}"
                            "\nCopy the exact text (read_file shows it) into old_string and try again.")
    _check_python(target, text, new_text)
    ws.write(target, new_text)
    return f"Edited {ws.rel(target)}\n{_diff(text, new_text, ws.rel(target))}"


def _check_python(target, old: str, new: str) -> None:
    """Refuse a change that turns valid Python into invalid Python: the model gets the error, the file stays."""
    if target.suffix != ".py" or not _compiles(old):
        return
    try:
        compile(new, str(target), "exec")
    except SyntaxError as exc:
        raise ToolError(f"not applied: the change would make {target.name} invalid Python "
                        f"(line {exc.lineno}: {exc.msg}); the file is unchanged. Fix new_string and try again.") from None


def _compiles(text: str) -> bool:
    try:
        compile(text, "<old>", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


_LINE_NUMBER = re.compile(r"^ *\d+\| ?")


def _strip_line_numbers(text: str) -> str:
    """Drop read_file's "  12| " prefixes, but only when every non-empty line has one."""
    lines = text.split("\n")
    if not all(_LINE_NUMBER.match(line) for line in lines if line.strip()):
        return text
    return "\n".join(_LINE_NUMBER.sub("", line, count=1) for line in lines)


def _whitespace_tolerant_replace(text: str, old: str, new: str) -> str | None:
    """Match `old` line by line ignoring surrounding whitespace; replace only a unique match.

    Each new line is re-indented relative to the old line at the same position (or the last one),
    with the file's real indentation for that line, so a block whose indentation the model dropped
    or changed is still written correctly indented.
    """
    lines = text.splitlines(keepends=True)
    old_lines = old.strip("\n").splitlines()
    want = [line.strip() for line in old_lines]
    if not any(want):
        return None
    hits = [i for i in range(len(lines) - len(want) + 1)
            if all(lines[i + j].strip() == want[j] for j in range(len(want)))]
    if len(hits) != 1:
        return None
    i = hits[0]
    pairs = [(_indent(old_lines[j]), _indent(lines[i + j])) for j in range(len(want)) if want[j]]
    out = []
    for j, line in enumerate(new.strip("\n").splitlines()):
        if not line.strip():
            out.append("")
            continue
        old_indent, file_indent = pairs[min(j, len(pairs) - 1)]
        own = _indent(line)
        if own.startswith(old_indent):
            indent = file_indent + own[len(old_indent):]
        else:
            indent = file_indent[:max(len(file_indent) - (len(old_indent) - len(own)), 0)]
        out.append(indent + line.lstrip())
    ending = "\n" if lines[i + len(want) - 1].endswith("\n") else ""
    replacement = "\n".join(out) + ending if out else ""
    return "".join(lines[:i]) + replacement + "".join(lines[i + len(want):])


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _closest(text: str, old: str) -> str:
    lines = text.splitlines()
    want = old.strip("\n").splitlines() or [old]
    size = len(want)
    best, best_i = 0.0, 0
    for i in range(max(len(lines) - size + 1, 1)):
        ratio = difflib.SequenceMatcher(None, "\n".join(want), "\n".join(lines[i:i + size])).ratio()
        if ratio > best:
            best, best_i = ratio, i
    if best < 0.3:
        return "No similar lines either."
    shown = "\n".join(f"{n}| {line}" for n, line in enumerate(lines[best_i:best_i + size], best_i + 1))
    return f"The most similar lines are:\n{shown}"


def _diff(old: str, new: str, name: str, max_lines: int = 60) -> str:
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{name}", f"b/{name}", lineterm="", n=2))
    if len(diff) > max_lines:
        diff = diff[:max_lines] + [f"... ({len(diff) - max_lines} more diff lines)"]
    return "\n".join(diff)


def list_directory(ws: Workspace, path: str = ".") -> str:
    target = ws.resolve(path)
    if not target.is_dir():
        raise ToolError(f"{path} is not a directory")
    entries = sorted(target.iterdir(), key=lambda p: (not p.is_dir(), p.name))
    names = [p.name + ("/" if p.is_dir() else "") for p in entries if p.name not in SKIP_DIRS]
    return "\n".join(names) if names else f"({path} is empty)"


def file_tools(ws: Workspace) -> list[Tool]:
    path = {"type": "string", "description": "path relative to the workspace"}
    return [
        Tool("read_file", "Read a text file; lines are shown with numbers.",
             {"type": "object", "properties": {
                 "path": path,
                 "offset": {"type": "integer", "description": "first line to show (1-based)"},
                 "limit": {"type": "integer", "description": "number of lines to show"}},
              "required": ["path"]},
             lambda **a: read_file(ws, **a), kind="read"),
        Tool("write_file", "Create or overwrite a file with the given content.",
             {"type": "object", "properties": {"path": path, "content": {"type": "string"}},
              "required": ["path", "content"]},
             lambda **a: write_file(ws, **a), kind="edit"),
        Tool("edit", "Replace old_string with new_string in a file. old_string must match the file exactly, once; "
                     "include a few lines of context.",
             {"type": "object", "properties": {
                 "path": path, "old_string": {"type": "string"}, "new_string": {"type": "string"}},
              "required": ["path", "old_string", "new_string"]},
             lambda **a: edit(ws, **a), kind="edit"),
        Tool("list_directory", "List the files and folders in a directory.",
             {"type": "object", "properties": {"path": path}, "required": []},
             lambda **a: list_directory(ws, **a), kind="read"),
    ]
