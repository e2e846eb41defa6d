"""Finish a signature change that a candidate began: once it defines the new function (`shift_hours(shift)`) beside
the old one the task replaces (`duration(start, end)`), every call of the old one becomes a call of the new one and
the old definition goes. Small models write the new function well but leave the callers, often in other files,
alone (held-out: 5 of 6 candidates defined `shift_hours` right and left `duration` and its callers in place).

How a call maps: the two bodies are matched node by node. Where the old body reads a parameter (`end`), the new one
reads an expression of its own parameters (`shift.end`): a template for that old parameter. A call's arguments
(`duration(s.start, s.end)`) are matched against the templates, which binds the new parameters (`shift` = `s`).
Anything that does not match (other bodies, a call whose arguments fit no template, the old function passed as a
value) leaves the change undone: None. What is made is a candidate like any other, judged by the tests.
"""

from __future__ import annotations

import ast
import itertools

from qcoder.agent.small_fixes import renamed

FUNCTION = (ast.FunctionDef, ast.AsyncFunctionDef)


def signature_changes(sources: dict[str, str], home: str, new: str, named: set[str]) -> list[tuple[str, dict[str, str]]]:
    """(old, changed files) for each function of `home` that `named` holds (the names the task uses) beside `new`:
    the files of `sources` (path -> text, the candidate's applied) that change when every call of `old` is
    rewritten as a call of `new` and `old`'s definition is removed from `home`. Empty where that cannot be done."""
    try:
        tree = ast.parse(sources[home])
    except (KeyError, SyntaxError):
        return []
    defs = {n.name: n for n in tree.body if isinstance(n, FUNCTION)}
    if new not in defs:
        return []
    return [(old, changed) for old, old_def in defs.items()
            if old in named and old != new and (changed := _finished(sources, home, old_def, defs[new]))]


def _finished(sources: dict[str, str], home: str, old_def, new_def) -> dict[str, str] | None:
    """The files that change when `old_def`'s calls become calls of `new_def` and it is removed from `home`."""
    templates = _templates(old_def, new_def)
    if templates is None:
        return None
    changed = {}
    for path, text in sources.items():
        if path == home:
            text = _without(text, old_def)
        rewritten = _rewrite_calls(text, old_def.name, new_def.name, old_def, new_def, templates)
        if rewritten is None:
            return None
        if rewritten != sources[path]:
            changed[path] = rewritten
    return changed or None


def _templates(old_def, new_def) -> dict[str, ast.AST] | None:
    """Old parameter -> the expression of the new parameters that the new body reads in its place."""
    out: dict[str, ast.AST] = {}
    params = {a.arg for a in _params(old_def)}
    old_body, new_body = _code(old_def.body), _code(new_def.body)
    if len(old_body) != len(new_body) or not all(_match(a, b, params, out) for a, b in zip(old_body, new_body, strict=True)):
        return None
    if len({ast.dump(t) for t in out.values()}) < len(out):
        return None  # two parameters read as one: the new body does something else
    return out


def _match(a, b, variables: set[str], bound: dict[str, ast.AST]) -> bool:
    """Whether `b` is `a` with each of `variables` (Names in `a`) replaced by one expression throughout."""
    if isinstance(a, ast.Name) and a.id in variables:
        if a.id in bound:
            return ast.dump(bound[a.id]) == ast.dump(b)
        bound[a.id] = b
        return True
    if type(a) is not type(b):
        return False
    for field in a._fields:
        if field in ("ctx", "type_comment"):
            continue
        x, y = getattr(a, field, None), getattr(b, field, None)
        if isinstance(x, list):
            if not isinstance(y, list) or len(x) != len(y) or not all(_match(i, j, variables, bound)
                                                                     for i, j in zip(x, y, strict=True)):
                return False
        elif isinstance(x, ast.AST):
            if not isinstance(y, ast.AST) or not _match(x, y, variables, bound):
                return False
        elif x != y:
            return False
    return True


def _rewrite_calls(text: str, old: str, new: str, old_def, new_def, templates) -> str | None:
    """`text` with each call of `old` (`old(...)`, `module.old(...)`) made a call of `new`, and `old` renamed in its
    imports; None if a call does not map or `old` is used otherwise."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n.func) == old]
    replaced = {id(n.func) for n in calls}
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and any(a.name == old for a in n.names)]
    for node in ast.walk(tree):
        if _name(node) == old and id(node) not in replaced:
            return None  # passed as a value, or a variable of that name: not a call to rewrite
        if (isinstance(node, ast.alias) and (node.asname == old or node.name == old and not any(
                node in i.names for i in imports))) or getattr(node, "arg", None) == old:
            return None  # `import old` (a module), `as old`, a parameter or keyword of that name
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    edits = []
    for call in calls:
        arguments = _new_arguments(call, old_def, new_def, templates)
        if arguments is None:
            return None
        prefix = ast.unparse(call.func.value) + "." if isinstance(call.func, ast.Attribute) else ""
        begin = starts[call.lineno - 1] + call.col_offset
        end = starts[call.end_lineno - 1] + call.end_col_offset
        edits.append((begin, end, f"{prefix}{new}({arguments})"))
    for statement in imports:  # `from .schedule import DAYS, duration` imports the new name instead
        begin = starts[statement.lineno - 1] + statement.col_offset
        end = starts[statement.end_lineno - 1] + statement.end_col_offset
        edits.append((begin, end, renamed(text[begin:end], old, new)))
    edits.sort()
    if any(a[1] > b[0] for a, b in itertools.pairwise(edits)):
        return None  # a call of `old` inside another's arguments
    for begin, end, replacement in reversed(edits):
        text = text[:begin] + replacement + text[end:]
    return text


def _new_arguments(call: ast.Call, old_def, new_def, templates) -> str | None:
    """The arguments, as source, of the call of the new function that does what `call` does with the old one."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None
    params = _params(old_def)
    if len(call.args) > len(params):
        return None
    given = {p.arg: a for p, a in zip(params, call.args, strict=False)} | {k.arg: k.value for k in call.keywords}
    defaults = dict(zip([p.arg for p in params][len(params) - len(old_def.args.defaults):], old_def.args.defaults, strict=True))
    new_params = [p.arg for p in _params(new_def)]
    bound: dict[str, ast.AST] = {}
    for name, template in templates.items():
        value = given.get(name, defaults.get(name))
        if value is None or not _match(template, value, set(new_params), bound):
            return None
    has_default = set([p.arg for p in _params(new_def)][len(new_params) - len(new_def.args.defaults):])
    out, keyword = [], False
    for name in new_params:
        if name not in bound:
            if name not in has_default:
                return None
            keyword = True  # a parameter left to its default: the ones after it go by name
            continue
        out.append(f"{name}={ast.unparse(bound[name])}" if keyword else ast.unparse(bound[name]))
    return ", ".join(out)


def _without(text: str, definition) -> str:
    """`text` without `definition` (its decorators included) and the blank lines after it."""
    lines = text.splitlines(keepends=True)
    first = min([definition.lineno] + [d.lineno for d in definition.decorator_list]) - 1
    last = definition.end_lineno
    while last < len(lines) and not lines[last].strip():
        last += 1
    return "".join(lines[:first] + lines[last:])


def _params(definition) -> list[ast.arg]:
    return definition.args.posonlyargs + definition.args.args


def _code(body: list[ast.stmt]) -> list[ast.stmt]:
    """A body without its docstring: the new function's says something else."""
    docstring = body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(
        body[0].value.value, str)
    return body[1:] if docstring else body


def _name(node) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
