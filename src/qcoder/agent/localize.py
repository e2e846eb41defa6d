"""Where a failing Python test points: the code to show the model, whole, and the names that do not exist yet.

Three sources, strongest first: the workspace frames of the failure's traceback (innermost first, then the
functions called beside an inner frame on an outer frame's line), the names the error says are missing
(`cannot import name 'slugify'`, `has no attribute 'to_dict'`), and the functions the failing test calls,
resolved through the test module's imports, each one-statement wrapper among them followed by what it calls; then,
with what room is left, the functions those hand on as values (a command's handler). Test files are never suspects,
and nor are classes without code.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from qcoder.agent.testing import TestReport, is_test_file

FRAME = re.compile(r'^\s*(?:File "([^"\n]+\.py)", line (\d+), in (\S+)|([^\s:"]+\.py):(\d+): in (\S+))', re.M)
MISSING = (
    (re.compile(r"cannot import name '(\w+)' from '([\w.]+)'"), "module"),
    (re.compile(r"module '([\w.]+)' has no attribute '(\w+)'"), "module-attr"),
    (re.compile(r"type object '(\w+)' has no attribute '(\w+)'"), "class"),
    (re.compile(r"'(\w+)' object has no attribute '(\w+)'"), "class"),
)
MAX_SUSPECTS = 4
MAX_LINES = 160  # of suspect source shown to the model
FOLD_LINES = 60  # a class this short is shown whole, for its methods
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass
class Suspect:
    path: str
    name: str  # "longest_word", "Parser.parse", or the name to create
    start: int  # 1-based, decorators included; 0 for a name that does not exist yet
    end: int
    source: str  # the definition's text; for a missing function, the module (or class) it goes into
    missing: bool = False


@dataclass
class Lead:
    """What the failing tests say: which tests, why, and the code to rewrite."""

    tests: list[str]
    test_sources: dict[str, str]  # test id -> the test function's source
    errors: dict[str, str]  # test id -> the failure text, trimmed
    suspects: list[Suspect] = field(default_factory=list)


class Definitions:
    """Functions, classes and methods of the workspace's Python files (not the tests), by file."""

    def __init__(self, root: Path, files: list[str], overlay: dict[str, str] | None = None):
        self.root = Path(root)
        self.overlay = overlay or {}  # path -> text that stands in for the file's (a candidate's)
        self.files = [f for f in dict.fromkeys([*files, *self.overlay]) if f.endswith(".py")]
        self._trees: dict[str, tuple[ast.Module, list[str]] | None] = {}

    def tree(self, path: str) -> tuple[ast.Module, list[str]] | None:
        if path not in self._trees:
            try:
                text = self.overlay.get(path) or (self.root / path).read_text(encoding="utf-8")
                self._trees[path] = (ast.parse(text), text.splitlines())
            except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
                self._trees[path] = None
        return self._trees[path]

    def nodes(self, path: str):
        """(qualified name, node) for every function, class and method of one file."""
        parsed = self.tree(path)
        return named_nodes(parsed[0]) if parsed else iter(())

    def suspect(self, path: str, name: str) -> Suspect | None:
        for qualname, node in self.nodes(path):
            if qualname == name:
                lines = self.tree(path)[1]
                start = first_line(node)
                return Suspect(path, qualname, start, node.end_lineno, "\n".join(lines[start - 1:node.end_lineno]))
        return None

    def enclosing(self, path: str, line: int) -> Suspect | None:
        """The innermost function (or method) of `path` that holds `line`."""
        best = None
        for qualname, node in self.nodes(path):
            if isinstance(node, FUNCTIONS) and node.lineno <= line <= node.end_lineno:
                best = qualname  # methods come after their class: the innermost wins
        return self.suspect(path, best) if best else None

    def defining(self, name: str, prefer: list[str] = ()) -> list[Suspect]:
        """Definitions named `name` (or `Class.name`), in the preferred files first."""
        found = []
        for path in [*prefer, *(f for f in self.files if f not in prefer)]:
            if is_test_file(path) or path not in self.files:
                continue
            for qualname, _ in self.nodes(path):
                if qualname == name or qualname.endswith("." + name):
                    found.append(self.suspect(path, qualname))
        return found

    def module_file(self, module: str) -> str | None:
        """The workspace file of an importable module name (flat or src/ layout)."""
        base = module.replace(".", "/")
        for candidate in (f"{base}.py", f"{base}/__init__.py", f"src/{base}.py", f"src/{base}/__init__.py"):
            if candidate in self.files:
                return candidate
        return None


def named_nodes(tree: ast.Module):
    """(qualified name, node) for every top-level function and class of a module, and every method."""
    for node in tree.body:
        if isinstance(node, (*FUNCTIONS, ast.ClassDef)):
            yield node.name, node
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, FUNCTIONS):
                    yield f"{node.name}.{member.name}", member


def span(text: str, name: str) -> tuple[int, int] | None:
    """The lines (1-based, decorators included) of the definition `name` (`f` or `Class.f`) in a module's text."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    node = next((n for qualname, n in named_nodes(tree) if qualname == name), None)
    return (first_line(node), node.end_lineno) if node else None


def first_line(node: ast.AST) -> int:
    """A definition's first line (1-based), its decorators included."""
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])


def localize(report: TestReport, root: Path, files: list[str], tests: list[str],
             overlay: dict[str, str] | None = None) -> Lead:
    """`overlay`: path -> text, the files as a candidate (whose test run `report` is) left them."""
    defs = Definitions(root, files, overlay)
    lead = Lead(tests=list(tests), test_sources={}, errors={})
    suspects: list[Suspect] = []
    for test in tests[:3]:
        failure = report.failures.get(test) or report.output[-3000:]
        lead.errors[test] = _trim(failure)
        lead.test_sources[test] = test_source(defs.root, test)
        suspects += _from_frames(defs, failure)
        suspects += _missing(defs, failure)
        # what the failing line calls before the test's setup (`assert loan.days_overdue(d) == 1` after
        # `book.give_back(...)`): the setup may use up the suspects' places
        failing = {line for path, line in frame_lines(failure) if path == test.split("::")[0]}
        called = _called(defs, test)
        suspects += [s for s, line in called if line in failing] + [s for s, line in called if line not in failing]
    # a one-statement wrapper (`return cls.from_dict(json.loads(text))`) is followed by what it hands the work to
    suspects = [d for s in suspects for d in (s, *_delegated(defs, s))]
    # last, the functions a suspect hands on as values (`set_defaults(func=cmd_list)`, a handler table): a new option
    # is parsed in `main` but acted on there, and no traceback reaches them
    handlers = [d for s in suspects if not s.missing for d in _dispatched(defs, s)]
    suspects += _named_by(handlers, " ".join(lead.test_sources.values()))
    seen, lines = set(), 0
    for suspect in _fold_into_classes(suspects):
        key = (suspect.path, suspect.name)
        size = suspect.source.count("\n") + 1
        if key in seen or len(lead.suspects) >= MAX_SUSPECTS or (lead.suspects and lines + size > MAX_LINES):
            continue
        seen.add(key)
        lines += size
        lead.suspects.append(suspect)
    return lead


def _fold_into_classes(suspects: list[Suspect], max_lines: int = FOLD_LINES) -> list[Suspect]:
    """A short class that is a suspect (a test constructs it) stands for its methods among the suspects, in the
    place of the first of them: shown the class and its methods apart, small models rewrite a method and never
    the class body (`_handlers = {}` shared by every instance needs an `__init__`)."""
    classes = {(s.path, s.name): s for s in suspects if not s.missing and "." not in s.name
               and _is_class(s.source) and s.source.count("\n") < max_lines}
    out = []
    for suspect in suspects:
        owner = classes.get((suspect.path, suspect.name.split(".")[0]))
        out.append(owner if owner and not suspect.missing else suspect)
    return out


def _trim(failure: str, limit: int = 1500) -> str:
    """The failure without pytest's own frames, and not too long: the end says the most."""
    lines = [line for line in failure.splitlines() if "site-packages" not in line and "/_pytest/" not in line]
    text = "\n".join(lines).strip()
    return text if len(text) <= limit else "...\n" + text[-limit:]


def test_source(root: Path, test: str) -> str:
    """A test function's source with its module's imports (a whole small module for a file-level id)."""
    path, *names = test.split("::")
    try:
        text = (Path(root) / path).read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return ""
    lines = text.splitlines()
    if not names:  # the module failed to import: its imports say what is missing
        return text if len(lines) <= 60 else "\n".join(lines[:40]) + "\n..."
    node, body = None, tree.body
    for name in names:
        name = name.split("[", 1)[0]
        node = next((n for n in body if isinstance(n, (*FUNCTIONS, ast.ClassDef)) and n.name == name), None)
        if node is None:
            return ""
        body = node.body
    imports = [ast.get_source_segment(text, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    start = first_line(node)
    return "\n".join([*imports, "", "", *lines[start - 1:node.end_lineno]]).strip()


def frame_lines(failure: str) -> list[tuple[str, int]]:
    """(path, line) of every traceback frame in a failure's text, outermost first."""
    return [((m.group(1) or m.group(4)).removeprefix("./"), int(m.group(2) or m.group(5)))
            for m in FRAME.finditer(failure)]


def _from_frames(defs: Definitions, failure: str) -> list[Suspect]:
    """The functions of the workspace frames, innermost first; then the others called on an outer frame's line:
    in `from_celsius(to_celsius(v, a), b)`, a Kelvin the first rejects the second lacks too, and no traceback
    reaches it."""
    every = frame_lines(failure)
    frames = [(path, line) for path, line in every if path in defs.files and not is_test_file(path)]
    found = [defs.enclosing(path, line) for path, line in reversed(frames)]  # innermost first
    # the innermost line too when it failed inside a library: `build_parser().parse_args(argv)` exits 2 in
    # argparse, and the parser that lacks the option is built by the function called beside it
    outer = frames if frames and every[-1] != frames[-1] else frames[:-1]
    callees = [c for path, line in outer for c in _called_on(defs, path, line)]
    return [s for s in found + callees if s]


def _called_on(defs: Definitions, path: str, line: int) -> list[Suspect]:
    """The module's own top-level functions called on one line of it."""
    parsed = defs.tree(path)
    if parsed is None:
        return []
    functions = {n.name for n in parsed[0].body if isinstance(n, FUNCTIONS)}
    calls = sorted((n.lineno, n.col_offset, n.func.id) for n in ast.walk(parsed[0])
                   if isinstance(n, ast.Call) and n.lineno == line and isinstance(n.func, ast.Name))
    return [s for *_, name in calls if name in functions and (s := defs.suspect(path, name))]


def _missing(defs: Definitions, failure: str) -> list[Suspect]:
    out = []
    for pattern, kind in MISSING:
        for match in pattern.finditer(failure):
            if kind == "module":
                name, path = match.group(1), defs.module_file(match.group(2))
            elif kind == "module-attr":
                name, path = match.group(2), defs.module_file(match.group(1))
            else:  # a class lacks a method: show the class, the method goes into it
                owner = next(iter(defs.defining(match.group(1))), None)
                if owner is None or "." in owner.name:
                    continue
                out.append(Suspect(owner.path, f"{owner.name}.{match.group(2)}", 0, 0, owner.source, missing=True))
                continue
            if path and not is_test_file(path) and defs.suspect(path, name) is None:
                text = "\n".join(defs.tree(path)[1]) if defs.tree(path) else ""
                out.append(Suspect(path, name, 0, 0, text, missing=True))
    return out


def _called(defs: Definitions, test: str) -> list[tuple[Suspect, int]]:
    """The workspace functions the test function calls, found through its module's imports, with the line of
    the test that calls each."""
    path, *names = test.split("::")
    parsed = defs.tree(path) if path.endswith(".py") else None
    if parsed is None:
        try:
            parsed = (ast.parse((defs.root / path).read_text(encoding="utf-8")), [])
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
            return []
    tree = parsed[0]
    imported: dict[str, str] = {}  # local name -> workspace file it comes from
    modules: dict[str, str] = {}  # local module alias -> workspace file
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            file = defs.module_file(node.module)
            for alias in node.names:
                if file:
                    imported[alias.asname or alias.name] = file
        elif isinstance(node, ast.Import):
            for alias in node.names:
                file = defs.module_file(alias.name)
                if file:
                    modules[alias.asname or alias.name] = file
    scope = tree
    for name in names:
        name = name.split("[", 1)[0]
        scope = next((n for n in ast.walk(scope) if isinstance(n, (*FUNCTIONS, ast.ClassDef)) and n.name == name),
                     scope)
    out = []
    for node in ast.walk(scope):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in imported:
            # a class with no methods (a data class, an enum) has no code to fix: the prompt's outline shows it
            found = [s for s in defs.defining(func.id, [imported[func.id]])[:1] if not _data_only(s.source)]
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
            found = defs.defining(func.attr, [modules[func.value.id]])[:1]
        elif isinstance(func, ast.Attribute) and not func.attr.startswith("assert"):
            found = [s for s in defs.defining(func.attr, sorted(set(imported.values()))) if "." in s.name]
            found = found[:1] if len(found) == 1 else []
        else:
            found = []
        out += [(s, node.lineno) for s in found]
    return out


def _delegated(defs: Definitions, suspect: Suspect) -> list[Suspect]:
    """The functions of its own module (and methods of its own class, through self or cls) that a suspect whose
    body is one statement calls: a wrapper passes the failure through, and its callee holds the code."""
    node = None if suspect.missing else definition_node(suspect.source)
    if not isinstance(node, FUNCTIONS):
        return []
    body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if len(body) != 1:
        return []
    owner = suspect.name.rsplit(".", 1)[0] if "." in suspect.name else None
    names = []
    for call in ast.walk(body[0]):
        func = call.func if isinstance(call, ast.Call) else None
        if isinstance(func, ast.Name):
            names.append(func.id)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and owner \
                and func.value.id in ("self", "cls"):
            names.append(f"{owner}.{func.attr}")
    return [found for name in dict.fromkeys(names) if name != suspect.name
            and (found := defs.suspect(suspect.path, name))]


def _dispatched(defs: Definitions, suspect: Suspect) -> list[Suspect]:
    """The top-level functions of the suspect's module that it names without calling them."""
    node = definition_node(suspect.source)
    if node is None:
        return []
    called = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
    named = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
             and id(n) not in called]
    parsed = defs.tree(suspect.path)
    functions = {n.name for n in parsed[0].body if isinstance(n, FUNCTIONS)} if parsed else set()
    return [s for name in dict.fromkeys(named) if name in functions and (s := defs.suspect(suspect.path, name))]


def _named_by(handlers: list[Suspect], tests: str) -> list[Suspect]:
    """The handlers whose own word (`list` of `cmd_list`, not the `cmd` they all share) the failing tests use, or
    all of them when the tests use none: a test of `list --json` has nothing to fix in `cmd_add`."""
    words = [set(re.findall(r"[a-z0-9]+", h.name.split(".")[-1].lower())) for h in handlers]
    shared = set.intersection(*words) if words else set()
    used = set(re.findall(r"[a-z0-9]+", tests.lower()))
    named = [h for h, w in zip(handlers, words, strict=True) if (w - shared) & used]
    return named or handlers


def definition_node(source: str) -> ast.stmt | None:
    """The parsed definition of a suspect's source (a method's too, dedented), or None when it does not parse."""
    try:
        return ast.parse(textwrap.dedent(source)).body[0]
    except (SyntaxError, IndexError):
        return None


def _class_node(source: str) -> ast.ClassDef | None:
    """The class a definition's source defines, or None when it is not a class."""
    node = definition_node(source)
    return node if isinstance(node, ast.ClassDef) else None


def _is_class(source: str) -> bool:
    return _class_node(source) is not None


def _data_only(source: str) -> bool:
    """Whether a definition is a class without a function of its own."""
    node = _class_node(source)
    return node is not None and not any(isinstance(n, FUNCTIONS) for n in node.body)
