"""Code in a model's reply, turned into new file contents (the way aider reads whole-file and fenced edits).

A fenced block belongs to the workspace file it names (in the fence's info string, in a first-line comment,
or in the prose just before it) or, for Python, to the file that defines the functions and classes it
defines. Python blocks are merged definition by definition: each function, method or class in the block
replaces the one of the same name, new definitions are appended, new imports join the file's imports.
A block that redefines everything in a file replaces it whole; so does a named block of another language
that is about as long as the file. Model output is hostile input: nothing here writes a file, and a
result that is not valid Python is dropped.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import PurePosixPath

from qcoder.agent.localize import first_line
from qcoder.agent.testing import is_test_file

FENCE = re.compile(r"^[ \t]*```[ \t]*([^\n`]*)\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)
PATH_LIKE = re.compile(r"[\w./-]+\.\w+")
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass
class Block:
    code: str
    lang: str
    path: str | None  # the workspace file the reply names for this block
    named_in_fence: bool = False  # named in the info string or a first-line comment, not only in prose


def extract_blocks(text: str, known: list[str]) -> list[Block]:
    """The fenced code blocks of `text`, each with the known workspace file it names, if any."""
    blocks, last_end = [], 0
    for match in FENCE.finditer(text):
        info, code = match.group(1).strip(), match.group(2)
        lang, _, rest = info.partition(" ")
        path, in_fence = _named_path(rest or (lang if "." in lang else ""), known), True
        if path is None and code.strip():
            first = code.strip().splitlines()[0]
            if first.lstrip().startswith(("#", "//", "--")):
                path = _named_path(first, known)
                if path:
                    code = code.split("\n", 1)[1] if "\n" in code else ""
        if path is None:
            path, in_fence = _named_path(text[max(last_end, match.start() - 300):match.start()], known, last=True), False
        blocks.append(Block(code, lang.lower() if "." not in lang else "", path, in_fence and path is not None))
        last_end = match.end()
    return blocks


def _named_path(text: str, known: list[str], last: bool = False) -> str | None:
    """A known workspace path mentioned in `text` (by full relative path, or by a unique file name)."""
    names: dict[str, list[str]] = {}
    for path in known:
        names.setdefault(PurePosixPath(path).name, []).append(path)
    hits = []
    for word in PATH_LIKE.findall(text):
        word = word.strip("./") if word.startswith("./") else word.rstrip(".")
        if word in known:
            hits.append(word)
        elif len(names.get(PurePosixPath(word).name, [])) == 1:
            hits.append(names[PurePosixPath(word).name][0])
    return (hits[-1] if last else hits[0]) if hits else None


def proposed_files(text: str, known: list[str], read: Callable[[str], str | None],
                   default: str | None = None, homes: dict[str, str] | None = None) -> dict[str, str]:
    """path -> new content for every block of `text` that matches a workspace file; {} when none does.

    `known` lists the workspace's files, `read(path)` gives one's current text, `default` is the file a Python
    block goes to when it names none and redefines nothing that exists (the repair path's suspect file), `homes`
    the file each new name belongs in (`cannot import name 'CurrencyMismatch' from 'money'`: money.py).
    """
    blocks = extract_blocks(text, known)
    if not blocks and default and re.match(r"\s*(@|def |async def |class |import |from )", text):
        blocks = [Block(text, "python", None)]  # bare code, no fence
    out: dict[str, str] = {}
    current = lambda path: out[path] if path in out else read(path)  # noqa: E731  blocks build on each other
    for block in blocks:
        python = block.lang in ("python", "py", "python3") or (block.path or "").endswith(".py") or (
            not block.lang and _parses(block.code))
        if python:
            named = block.path if block.path and block.path.endswith(".py") else None
            for target, code in [(named, block.code)] if named else _split_by_file(block.code, known, current, default,
                                                                                 homes or {}):
                old = current(target)
                module = target.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
                new = code if old is None and block.named_in_fence else merge_python(old or "", code, module)
                new = new and import_missing_names(new, target, known, current)
                if new is not None and new != old:
                    out[target] = new
        elif block.path and current(block.path) is not None:
            old = current(block.path)
            if len(block.code.splitlines()) >= 0.6 * len(old.splitlines()) and block.code.strip() != old.strip():
                out[block.path] = block.code if block.code.endswith("\n") else block.code + "\n"
    return out


def _parses(code: str) -> bool:
    return _parse(code) is not None


def _parse(code: str) -> ast.Module | None:
    for text in (code, textwrap.dedent(code)):
        try:
            return ast.parse(text)
        except (SyntaxError, ValueError):
            continue
    return None


def _defining_file(code: str, sources: dict[str, str]) -> str | None:
    """The Python file (of `sources`, path -> text) that already defines most of the block's top-level names."""
    tree = _parse(code)
    if tree is None:
        return None
    wanted = {n.name for n in tree.body if isinstance(n, DEFINITIONS) and not n.name.startswith("test")}
    best, best_hits = None, 0
    for path, source in sources.items():
        hits = sum(1 for name in wanted if _defines(source, name))
        if hits > best_hits:
            best, best_hits = path, hits
    return best


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^\s*(async\s+def|def|class)\s+{re.escape(name)}\b", source, re.M) is not None


def _split_by_file(code: str, known: list[str], read: Callable[[str], str | None],
                   default: str | None, homes: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The block cut into one piece per file: each top-level definition goes to the file that defines it (a reply
    often rewrites a function and its caller from another module together); new names, imports and other
    statements go to the file that defines most of the block, but for a constant that another file binds and a new
    name whose file `homes` knows."""
    sources = {p: read(p) or "" for p in known if p.endswith(".py")}  # each file read once
    primary = _defining_file(code, sources) or default
    tree = _parse(code)
    if primary is None or tree is None:
        return [(primary, code)] if primary else []
    lines = (code if _try_parse(code) else textwrap.dedent(code)).splitlines()
    primary_source = sources.get(primary, read(primary) or "")
    pieces: dict[str, list[str]] = {}
    for node in tree.body:
        home = primary
        if isinstance(node, DEFINITIONS) and not _defines(primary_source, node.name):
            home = next((p for p, text in sources.items() if _defines(text, node.name)),
                        (homes or {}).get(node.name, primary))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and (name := assigned_name(node)) and not binds_top_level(
                primary_source, name):  # a constant shown with the function of another file that reads it
            home = next((p for p, text in sources.items() if binds_top_level(text, name)), primary)
        pieces.setdefault(home, []).extend([*_node_lines(node, lines), "", ""])
    return [(path, "\n".join(chunk).rstrip() + "\n") for path, chunk in pieces.items()]


def merge_python(original: str, code: str, module: str = "") -> str | None:
    """`original` (the module named `module`) with the block's definitions put in; None when the block changes
    nothing or breaks the file. Imports of the module itself or of tests (copied from a test) are left out."""
    block = _parse(code)
    if block is None:
        return None
    code = code if _try_parse(code) else textwrap.dedent(code)
    block_lines = code.splitlines()
    try:
        tree = ast.parse(original) if original.strip() else ast.Module(body=[], type_ignores=[])
    except SyntaxError:
        return None
    lines = original.splitlines()
    top = {n.name: n for n in tree.body if isinstance(n, DEFINITIONS)}
    block_defs = [n for n in block.body if isinstance(n, DEFINITIONS)]
    replacements: list[tuple[int, int, list[str]]] = []  # (first line, last line) 0-based, inclusive
    appended: list[str] = []
    for node in block.body:
        source = _node_lines(node, block_lines)
        if isinstance(node, DEFINITIONS):
            if node.name.startswith("test_") and node.name not in top:
                continue  # a copy of a test, not code under test
            old = top.get(node.name)
            if old is not None and isinstance(old, ast.ClassDef) and isinstance(node, ast.ClassDef):
                replacements += _merge_class(old, node, lines, block_lines)
            elif old is not None:
                replacements.append((_start(old), old.end_lineno - 1, _keep_docstring(old, node, source, lines)))
            elif isinstance(node, FUNCTIONS) and (method := _only_method(tree, node.name)) is not None:
                indent = indent_of(lines[method.lineno - 1])
                source = _keep_docstring(method, node, source, lines)
                replacements.append((_start(method), method.end_lineno - 1, _reindent(source, indent)))
            else:
                appended += ["", "", *source]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            name = assigned_name(node)
            old = next((n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                        and assigned_name(n) == name), None)
            if old is not None:
                replacements.append((old.lineno - 1, old.end_lineno - 1, source))
            elif name and name in _names_used(block_defs):
                appended += ["", *source]
    imports = [line for node in block.body if isinstance(node, (ast.Import, ast.ImportFrom))
               and not _imports_self_or_tests(node, module)
               for line in _node_lines(node, block_lines) if line.strip() not in {x.strip() for x in lines}]
    if not replacements and not appended:
        return None
    replacements.sort(key=lambda r: r[0])
    for (_, end, _), (start, _, _) in pairwise(replacements):
        if start <= end:
            return None  # overlapping edits: the block is not a clean set of definitions
    for start, end, new in reversed(replacements):
        lines[start:end + 1] = new
    if appended:  # new definitions go before a `__main__` block, else at the end
        main = next((i for i, line in enumerate(lines) if line.startswith("if __name__")), None)
        if main is None:
            while lines and not lines[-1].strip():
                lines.pop()
            lines += appended
        else:
            lines[main:main] = [*"\n".join(appended).strip("\n").splitlines(), "", ""]
    if imports:
        at = _import_position(original)
        lines[at:at] = imports if _has_imports(original) else ["", *imports] if at else [*imports, ""]
    return _finish("\n".join(lines), original)


def _try_parse(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def _finish(text: str, original: str) -> str | None:
    text = text.rstrip("\n") + "\n"
    if not _try_parse(text) or text == original:
        return None
    return text


def _start(node) -> int:
    """0-based first line of a definition, decorators included."""
    return first_line(node) - 1


def _node_lines(node, lines: list[str]) -> list[str]:
    return lines[_start(node):node.end_lineno]


def indent_of(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _reindent(source: list[str], indent: str) -> list[str]:
    body = textwrap.dedent("\n".join(source)).splitlines()
    return [indent + line if line.strip() else "" for line in body]


def _only_method(tree: ast.Module, name: str):
    """The method `name` when exactly one class of the module defines it."""
    found = [m for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body
             if isinstance(m, FUNCTIONS) and m.name == name]
    return found[0] if len(found) == 1 else None


def _merge_class(old: ast.ClassDef, new: ast.ClassDef, lines: list[str], block_lines: list[str]):
    """A class in the block: the whole class when it keeps every method, else its methods one by one."""
    old_methods = {m.name: m for m in old.body if isinstance(m, FUNCTIONS)}
    new_methods = [m for m in new.body if isinstance(m, FUNCTIONS)]
    if set(old_methods) <= {m.name for m in new_methods}:
        source = _node_lines(new, block_lines)
        if old.decorator_list and not new.decorator_list:  # small models drop `@dataclass` when they rewrite a class
            source = lines[_start(old):old.lineno - 1] + source
        return [(_start(old), old.end_lineno - 1, source)]
    indent = indent_of(lines[old.body[0].lineno - 1])
    edits, added = [], []
    for method in new_methods:
        source = _reindent(_node_lines(method, block_lines), indent)
        if method.name in old_methods:
            target = old_methods[method.name]
            edits.append((_start(target), target.end_lineno - 1, source))
        else:
            added += ["", *source]
    if added:  # an insertion after the class's last line: (first, last) = (end + 1, end)
        edits.append((old.end_lineno, old.end_lineno - 1, added))
    return edits


def _keep_docstring(old, new, source: list[str], lines: list[str]) -> list[str]:
    """A rewritten function that dropped its docstring gets the old one back: the diff shows only the fix."""
    if not isinstance(old, FUNCTIONS) or ast.get_docstring(old) is None or ast.get_docstring(new) is not None:
        return source
    doc = lines[old.body[0].lineno - 1:old.body[0].end_lineno]
    at = new.body[0].lineno - _start(new) - 1  # the new body's first line, within `source`
    indent = indent_of(source[at]) if at < len(source) else ""
    return [*source[:at], *_reindent(doc, indent), *source[at:]]


def assigned_name(node) -> str | None:
    target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
    return target.id if isinstance(target, ast.Name) else None


def _names_used(nodes) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def _imports_self_or_tests(node, module: str) -> bool:
    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
    return any(name and (name == module or module.endswith("." + name) or name.split(".")[-1].startswith("test"))
               for name in names)


def _has_imports(original: str) -> bool:
    return re.search(r"^(import|from)\s", original, re.M) is not None


def _import_position(original: str) -> int:
    """0-based line after the module's leading docstring and imports."""
    try:
        tree = ast.parse(original)
    except SyntaxError:
        return 0
    at = 0
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant) and at == 0
        if isinstance(node, (ast.Import, ast.ImportFrom)) or is_doc or (
                isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            at = node.end_lineno
        else:
            break
    return at


def import_missing_names(source: str, path: str, known: list[str], read: Callable[[str], str | None]) -> str:
    """`source` with `from module import NAME` added for each global name it uses but never binds, where exactly
    one other (non-test) workspace module defines NAME at its top level, else `import NAME` where NAME is a
    standard library module: rewritten code often raises or builds a class from a sibling module without
    importing it, or calls `json.dumps` in a module that never imported json."""
    missing = sorted(unbound_globals(source))
    if not missing:
        return source
    sources = {p: read(p) or "" for p in known if p.endswith(".py") and p != path and not is_test_file(p)}
    adds = []
    for name in missing:
        homes = [p for p, text in sources.items() if binds_top_level(text, name)]
        if len(homes) == 1:
            module = homes[0].removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            adds.append(f"from {module} import {name}")
        elif not homes and name in sys.stdlib_module_names and not name.startswith("_"):
            adds.append(f"import {name}")
    if not adds:
        return source
    lines = source.splitlines()
    at = _import_position(source)
    lines[at:at] = adds if _has_imports(source) or not at else ["", *adds]
    return _finish("\n".join(lines), source) or source


def unbound_globals(source: str) -> set[str]:
    """Global names read somewhere in `source` that the module never binds (and that are not builtins)."""
    try:
        top = symtable.symtable(source, "<candidate>", "exec")
    except SyntaxError:
        return set()
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    used: set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        tables += table.get_children()
        used |= {s.get_name() for s in table.get_symbols()
                 if s.is_referenced() and (table is top or s.is_global()) and not s.is_assigned()}
    return {n for n in used - bound if not hasattr(builtins, n) and not n.startswith("__")}


def binds_top_level(source: str, name: str) -> bool:
    return _defines_top_level(source, name) or re.search(rf"^{re.escape(name)}\s*(:[^=]*)?=", source, re.M) is not None


def _defines_top_level(source: str, name: str) -> bool:
    return re.search(rf"^(async\s+def|def|class)\s+{re.escape(name)}\b", source, re.M) is not None

