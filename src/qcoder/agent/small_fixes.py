"""One-token fixes of a suspect function: tried by the repair path before it asks the model.

Most bugs that one failing test pins down are a single token off; studies of one-line bug fixes ("simple stupid
bugs") find the same few shapes again and again: a comparison's boundary (`<` for `<=`), a wrong operator (`+`
for `-`, `and` for `or`), a number off by one, a flipped literal or separator (`" ".join` for `"".join`), a
negation missing or extra, an index or a bound off by one, the wrong one of two parameters compared, two
arguments swapped, a function taken for its counterpart (`min` for `max`, `.lstrip` for `.rstrip`). Checking one
costs a test run and no model call, so a few dozen are cheaper than one round of sampled rewrites on a CPU, and they
work the same with every model.

Each fix replaces the text of one node (or just its operator) in the file, so the diff is that one change;
comments and formatting elsewhere stay as they were. Fixes on the lines the traceback passes through come first.

`renames` covers the other name-level bug: the tests use a name the project lacks while it defines a close one
(`get_user` against `get_usr`), so the rename refactoring, applied to every identifier in every source file, is
the candidate.

`trimmed_values` covers input kept as it came where the tests want it trimmed: their compared values differ only
in whitespace, so the value collected or returned gets a `.strip()`.

`skipped_blanks` covers blank entries collected where the tests' expected list has none: `out.append(x)` gets an
`if x:`. `evident_fixes` gathers these and their combination.

`returned_none` covers `return print(x)`: the function then returns None, not the status it returns elsewhere.

`escaped_exceptions` covers a handler for the wrong exception: the test ends with one the `except` does not name.

`missing_options` covers a new command-line flag: the tests pass an option argparse rejects, so declaring it on
the right parser is the mechanical half of the change; the tests pick the parser, and the model writes the rest.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import io
import re
import sys
import textwrap
import tokenize
from dataclasses import dataclass

from qcoder.agent.fenced_edits import assigned_name, indent_of

COMPARE = {ast.Lt: ("<", ["<=", ">"]), ast.LtE: ("<=", ["<", ">="]), ast.Gt: (">", [">=", "<"]),
           ast.GtE: (">=", [">", "<="]), ast.Eq: ("==", ["!="]), ast.NotEq: ("!=", ["=="]),
           ast.Is: ("is", ["is not"]), ast.IsNot: ("is not", ["is"]), ast.In: ("in", ["not in"]),
           ast.NotIn: ("not in", ["in"])}
ARITH = {ast.Add: ("+", ["-"]), ast.Sub: ("-", ["+"]), ast.Mult: ("*", ["/"]), ast.Div: ("/", ["//", "*"]),
         ast.FloorDiv: ("//", ["/"]), ast.Mod: ("%", ["//"])}
BOOL = {ast.And: ("and", ["or"]), ast.Or: ("or", ["and"])}
# Functions and methods taken for their counterpart: `min` where `max` was meant, `.lstrip` for `.rstrip`
COUNTERPARTS = {"min": ["max"], "max": ["min"], "any": ["all"], "all": ["any"], "floor": ["ceil"], "ceil": ["floor"],
                "lower": ["upper"], "upper": ["lower"], "startswith": ["endswith"], "endswith": ["startswith"],
                "lstrip": ["rstrip", "strip"], "rstrip": ["lstrip", "strip"], "find": ["rfind"], "rfind": ["find"],
                "split": ["rsplit"], "rsplit": ["split"], "append": ["extend"], "extend": ["append"],
                "keys": ["values"], "values": ["keys"]}
# What a separator string may have been meant to be: none, a space, a comma, or both.
SEPARATORS = ("", " ", ",", ", ")
# Kinds in the order they are tried on a line: the commonest one-token bugs first.
ORDER = ("compare", "number", "arith", "bool", "callee", "literal", "negation", "bound", "variable", "swap")
# Where `e + 1` needs no parentheses: the node is a whole argument, index, bound or value.
LOOSE = (ast.Call, ast.Slice, ast.Subscript, ast.Return, ast.Assign, ast.keyword, ast.List, ast.Tuple)


@dataclass
class SmallFix:
    line: int
    kind: str
    description: str  # "line 7: `<` -> `<=`"
    text: str  # the whole file with the fix


def small_fixes(source: str, start: int, end: int, focus: tuple[int, ...] = (), limit: int = 60) -> list[SmallFix]:
    """Up to `limit` one-token variants of the code on lines start..end of `source` (a whole file), each a
    whole new file text that parses. Lines in `focus` (the traceback's) first, then the rest by distance."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    data = source.encode("utf-8")
    at = lambda line, col: offsets[line - 1] + col  # noqa: E731  (ast columns are UTF-8 byte offsets)
    skip = _docstrings_and_annotations(tree)
    edits: list[tuple[int, str, int, int, bytes, str]] = []  # line, kind, begin, stop, replacement, description
    for parent in ast.walk(tree):
        for node in ast.iter_child_nodes(parent):
            if id(node) in skip or not hasattr(node, "lineno") or not start <= node.lineno <= end:
                continue
            for kind, begin, stop, new, what in _edits(node, parent, data, at):
                edits.append((node.lineno, kind, begin, stop, new.encode("utf-8"), what))
    for line, name, begin, stop, other in _misused(tree, start, end, at):
        edits.append((line, "variable", begin, stop, other.encode("utf-8"), f"`{name}` -> `{other}`"))
    focus_lines = [f for f in focus if start <= f <= end]
    distance = lambda line: min((abs(line - f) for f in focus_lines), default=0)  # noqa: E731
    edits.sort(key=lambda e: (distance(e[0]), ORDER.index(e[1]), e[0], e[2]))
    out, seen = [], {source}
    for line, kind, begin, stop, new, what in edits:
        text = (data[:begin] + new + data[stop:]).decode("utf-8")
        if text in seen:
            continue
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        seen.add(text)
        out.append(SmallFix(line, kind, f"line {line}: {what}", text))
        if len(out) >= limit:
            break
    return out


def _edits(node, parent, data: bytes, at):
    """(kind, begin, stop, replacement, description) for each one-token change of `node`."""
    span = lambda n: (at(n.lineno, n.col_offset), at(n.end_lineno, n.end_col_offset))  # noqa: E731
    text = lambda n: data[slice(*span(n))].decode("utf-8")  # noqa: E731
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            left = node.left if i == 0 else node.comparators[i - 1]
            old, news = COMPARE[type(op)]
            for new in news:
                yield from _operator(data, span(left)[1], span(node.comparators[i])[0], old, new, "compare")
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in ARITH:
        left, right = (node.left, node.right) if isinstance(node, ast.BinOp) else (node.target, node.value)
        old, news = ARITH[type(node.op)]
        if isinstance(node, ast.AugAssign):
            old, news = old + "=", [n + "=" for n in news]
        if not (isinstance(node.op, ast.Add) and _is_text(left, right)):  # "a" + "b" has no minus
            for new in news:
                yield from _operator(data, span(left)[1], span(right)[0], old, new, "arith")
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) and _is_one(right):
            yield "number", *span(node), text(left), f"`{text(node)}` -> `{text(left)}`"  # x - 1 -> x, not x - 0
    elif isinstance(node, ast.BoolOp):
        old, (new,) = BOOL[type(node.op)]
        for a, b in zip(node.values, node.values[1:], strict=False):
            yield from _operator(data, span(a)[1], span(b)[0], old, new, "bool")
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield "literal", *span(node), str(not node.value), f"`{node.value}` -> `{not node.value}`"
    elif _is_separator(node, parent):  # `" ".join(parts)` where "1h30m" is wanted
        if _splits_on_space(node, parent):  # `split(" ")` leaves empty parts where the text has runs of blanks
            yield "literal", *span(node), "", f"`{text(parent)}` -> `{text(parent.func)}()`"
        quote = text(node)[-1]
        for new in SEPARATORS:
            if new != node.value:
                yield "literal", *span(node), quote + new + quote, f"`{text(node)}` -> `{quote + new + quote}`"
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(parent, ast.UnaryOp):
        value = node.value
        dropped = isinstance(parent, ast.BinOp) and isinstance(parent.op, (ast.Add, ast.Sub)) and node is parent.right
        for new in (value + 1, value - 1):
            if (isinstance(value, int) or value == int(value)) and not (dropped and new == 0):
                yield "number", *span(node), repr(new), f"`{text(node)}` -> `{new!r}`"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        yield "negation", *span(node), _wrapped(text(node.operand), node.operand, parent), \
            f"`{text(node)}` -> `{text(node.operand)}`"
    if isinstance(parent, (ast.If, ast.While, ast.IfExp)) and node is parent.test and not (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        inner = text(node) if isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Compare)) \
            else f"({text(node)})"
        yield "negation", *span(node), f"not {inner}", f"`{text(node)}` -> `not {inner}`"
    if _is_bound(node, parent):
        for sign in ("+", "-"):
            new = f"{text(node)} {sign} 1"
            yield "bound", *span(node), new if isinstance(parent, LOOSE) else f"({new})", f"`{text(node)}` -> `{new}`"
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
        name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        stop = span(node.func)[1]  # an attribute's name ends it
        for new in COUNTERPARTS.get(name, ()):
            yield "callee", stop - len(name.encode("utf-8")), stop, new, f"`{name}(` -> `{new}(`"
    if isinstance(node, ast.Call) and len(node.args) == 2 and not node.keywords and not any(
            isinstance(a, ast.Starred) for a in node.args):
        a, b = node.args
        (a0, a1), (b0, b1) = span(a), span(b)
        swapped = data[b0:b1] + data[a1:b0] + data[a0:a1]
        yield "swap", a0, b1, swapped.decode("utf-8"), f"`{text(a)}, {text(b)}` -> `{text(b)}, {text(a)}`"


def _misused(tree, start: int, end: int, at):
    """(line, name, begin, stop, other) for each parameter compared in its function, as each other parameter:
    `b.end > end` where `b.end > start` was meant, the wrong one of two similar variables."""
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        arguments = function.args.posonlyargs + function.args.args + function.args.kwonlyargs
        params = [a.arg for a in arguments if a.arg not in ("self", "cls")]
        for compare in ast.walk(function):
            if not (isinstance(compare, ast.Compare) and start <= compare.lineno <= end):
                continue
            for operand in (compare.left, *compare.comparators):
                if isinstance(operand, ast.Name) and operand.id in params:
                    begin, stop = at(operand.lineno, operand.col_offset), at(operand.lineno, operand.end_col_offset)
                    for other in params:
                        if other != operand.id:
                            yield operand.lineno, operand.id, begin, stop, other


def _is_separator(node, parent) -> bool:
    """A short plain string of spaces and punctuation that joins or splits text (not part of an f-string)."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) <= 2
            and set(node.value) <= set(" ,;:-_/|") and not isinstance(parent, ast.JoinedStr))


def _splits_on_space(node, parent) -> bool:
    return (node.value == " " and isinstance(parent, ast.Call) and parent.args == [node] and not parent.keywords
            and isinstance(parent.func, ast.Attribute) and parent.func.attr in ("split", "rsplit"))


def _operator(data: bytes, begin: int, stop: int, old: str, new: str, kind: str):
    """The operator token `old` in the text between two operands (parentheses and spaces around it), as `new`."""
    gap = data[begin:stop].decode("utf-8")
    pattern = r"\b" + re.escape(old).replace(r"\ ", r"\s+") + r"\b" if old[0].isalpha() else \
        r"(?<![<>=!*/%+-])" + re.escape(old) + r"(?![<>=*/])"
    match = re.search(pattern, gap)
    if match:
        b, e = begin + len(gap[:match.start()].encode("utf-8")), begin + len(gap[:match.end()].encode("utf-8"))
        yield kind, b, e, new, f"`{old}` -> `{new}`"


def _is_bound(node, parent) -> bool:
    """An index, slice bound or range() argument that is an expression (numbers have their own edit), or a
    variable, attribute or call in arithmetic (`number * size` where `(number - 1) * size` was meant)."""
    if isinstance(node, ast.Constant) or not isinstance(node, ast.expr):
        return False
    if isinstance(parent, ast.BinOp) and isinstance(node, (ast.Name, ast.Attribute, ast.Call)):
        return not _is_text(parent.left, parent.right)
    if isinstance(parent, ast.Slice):
        return True
    if isinstance(parent, ast.Subscript) and node is parent.slice and isinstance(parent.ctx, ast.Load):
        return not isinstance(node, (ast.Tuple, ast.Slice)) and not _is_text(node)
    return (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "range"
            and node in parent.args)


def _is_one(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value == 1


def _is_text(*nodes) -> bool:
    return any(isinstance(n, (ast.JoinedStr,)) or (isinstance(n, ast.Constant) and isinstance(n.value, str))
               for n in nodes)


def _wrapped(text: str, node, parent) -> str:
    simple = isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant))
    return text if simple or isinstance(parent, LOOSE + (ast.If, ast.While, ast.BoolOp)) else f"({text})"


def _docstrings_and_annotations(tree) -> set[int]:
    """ids of the nodes no fix may touch: docstrings and every part of a type annotation."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                                                           ast.Constant):
            skip.update(id(n) for n in ast.walk(body[0]))
        for annotation in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if isinstance(annotation, ast.AST):
                skip.update(id(n) for n in ast.walk(annotation))
    return skip


def renames(missing: str, home: str, sources: dict[str, str], strings: bool = False) -> tuple[str, dict[str, str]] | None:
    """(old name, new file texts) renaming the top-level name of `home` (a path in `sources`) closest to the
    missing name to it, in every file of `sources` that uses it (`strings`: in string literals too); None when no
    name is close."""
    try:
        tree = ast.parse(sources[home])
    except (KeyError, SyntaxError):
        return None
    names = {t.id for n in tree.body for t in ast.walk(n) if isinstance(n, (ast.Assign, ast.AnnAssign))
             and isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
    names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    close = difflib.get_close_matches(missing, sorted(names - {missing}), n=1, cutoff=0.75)
    if not close:
        return None
    changed = {path: text for path, text in ((p, renamed(t, close[0], missing, strings)) for p, t in sources.items())
               if text != sources[path]}
    return close[0], changed


STRING_TOKENS = {tokenize.STRING, *(getattr(tokenize, t) for t in ("FSTRING_MIDDLE",) if hasattr(tokenize, t))}


def renamed(text: str, old: str, new: str, strings: bool = False) -> str:
    """`text` with every identifier `old` spelled `new`; comments are left alone, and so are strings unless
    `strings`: then a string's `old` as a word of its own or in snake case (`APP_MAX_RETRY`, `max_retry`) is
    renamed in the case it is written in, as an IDE's "rename in strings too" does."""
    word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(old)}(?![A-Za-z0-9])", re.I)

    def in_case(match: re.Match) -> str:
        found = match.group(0)
        return new.upper() if found.isupper() else new.lower() if found.islower() else new

    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                  if (t.type == tokenize.NAME and t.string == old) or (strings and t.type in STRING_TOKENS)]
    except (tokenize.TokenError, SyntaxError):
        return text
    starts = [0]  # offset of each line, for the tokens' (row, column) positions
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for token in reversed(tokens):  # from the end, so earlier offsets stay valid
        begin, end = starts[token.start[0] - 1] + token.start[1], starts[token.end[0] - 1] + token.end[1]
        replacement = new if token.type == tokenize.NAME else word.sub(in_case, text[begin:end])
        text = text[:begin] + replacement + text[end:]
    return text


# argparse's complaint about options the parser does not know: "error: unrecognized arguments: --json 3"; a test
# that captures stderr itself (capsys) shows only the exit.
UNRECOGNIZED = re.compile(r"error: unrecognized arguments: (.+)|^E\s+SystemExit: 2$", re.M)
OPTION = re.compile(r"--[A-Za-z][\w-]*")
SWITCH, VALUE, NUMBER = ', action="store_true"', "", ", type=int"
REPEATED = ', action="append", default=[]'  # an option a test passes more than once (`--tag a --tag b`)


def missing_options(source: str, start: int, end: int, failures: list[str], tests: list[str]) -> list[SmallFix]:
    """The options the failing tests pass that argparse rejects, each added to each parser that lines start..end
    of `source` build, as whole new file texts: a new flag's declaration is mechanical, so the search finds the
    parser that takes it and the model is left with what the flag does. The options are those argparse names
    ("unrecognized arguments: --json"), else those in the tests' argument lists (`main(["list", "--json"])`) that
    `source` never mentions. One followed by a value takes one (`type=int` for a number), else it is a switch."""
    options: dict[str, list[str]] = {}  # option -> how to declare it, in the order to try
    for failure in failures:
        for match in UNRECOGNIZED.finditer(failure):
            words = (match.group(1) or "").split()
            for at, word in enumerate(words):
                name, _, value = word.partition("=")
                if OPTION.fullmatch(name):
                    value = value or (words[at + 1] if at + 1 < len(words) and not words[at + 1].startswith("-")
                                      else None)
                    if sum(w.partition("=")[0] == name for w in words) > 1:
                        options[name] = [REPEATED]
                    options.setdefault(name, [_declared(value)])
    if not options and any(UNRECOGNIZED.search(f) for f in failures):
        passed: dict[str, list[str]] = {}
        for name, ways in (found for test in tests for found in _arguments(test)):
            passed[name] = ways if ways == [REPEATED] else passed.get(name, ways)  # the first, unless repeated
        # those the source never mentions; else those it declares, maybe on another subcommand (`add --tag`)
        options = {n: w for n, w in passed.items() if f'"{n}"' not in source and f"'{n}'" not in source} or passed
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    last: dict[str, ast.stmt] = {}  # parser variable -> the statement after which an option goes
    unbound: dict[str, ast.stmt] = {}  # `sub.add_parser("list")` kept in no variable: the name it gets
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Expr, ast.Assign)) or not start <= node.lineno <= end:
            continue
        call = node.value
        if not (isinstance(call, ast.Call) and isinstance(call.func, (ast.Attribute, ast.Name))):
            continue
        name = call.func.attr if isinstance(call.func, ast.Attribute) else call.func.id
        if isinstance(node, ast.Expr) and name == "add_argument" and isinstance(call.func.value, ast.Name):
            last[call.func.value.id] = node
        elif (isinstance(node, ast.Expr) and name == "add_parser" and call.args
              and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
            variable = re.sub(r"\W", "_", call.args[0].value) + "_parser"
            if variable.isidentifier() and not re.search(rf"\b{variable}\b", source):
                unbound[variable] = node
        elif (isinstance(node, ast.Assign) and name in ("ArgumentParser", "add_parser")
              and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            last.setdefault(node.targets[0].id, node)
    lines = source.splitlines(keepends=True)
    out = []
    parsers = sorted({**last, **unbound}.items(), key=lambda item: -item[1].lineno)  # innermost first
    for option, ways in options.items():
        for how in ways:
            for parser, after in parsers:
                indent = re.match(r"\s*", lines[after.lineno - 1]).group(0)
                line = f'{indent}{parser}.add_argument("{option}"{how})\n'
                head = lines[:after.end_lineno]
                if parser in unbound:  # the subcommand's parser is kept in a variable to take the option
                    head[after.lineno - 1] = f"{indent}{parser} = {head[after.lineno - 1][len(indent):]}"
                text = "".join(head + [line] + lines[after.end_lineno:])
                out.append(SmallFix(after.end_lineno + 1, "option", f"added `{option}` to `{parser}`", text))
    return out


def _arguments(test: str) -> list[tuple[str, list[str]]]:
    """(option, how to declare it) for each option string in a list or tuple of the test's code: a switch when
    the next item is another option or there is none, a value when it is a string; either when it is not a
    constant (`[log, "--count"]` against `["--count", log]`: the file may be a positional)."""
    try:
        tree = ast.parse(textwrap.dedent(test))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.List, ast.Tuple, ast.Call)):
            continue
        items = node.args if isinstance(node, ast.Call) else node.elts  # `run(capsys, "list", "--tag", "x")` too
        for at, item in enumerate(items):
            if not (isinstance(item, ast.Constant) and isinstance(item.value, str)):
                continue
            name, _, value = item.value.partition("=")
            if not OPTION.fullmatch(name):
                continue
            after = items[at + 1] if at + 1 < len(items) else None
            if sum(isinstance(i, ast.Constant) and i.value == name for i in items) > 1:
                ways = [REPEATED]
            elif value:
                ways = [_declared(value)]
            elif after is None or isinstance(after, ast.Constant) and str(after.value).startswith("-"):
                ways = [SWITCH]
            elif isinstance(after, ast.Constant):
                ways = [_declared(str(after.value))]
            else:
                ways = [SWITCH, VALUE]
            found.append((name, ways))
    return found


def _declared(value: str | None) -> str:
    """How to declare an option passed with `value` (None: with none)."""
    return SWITCH if value is None else NUMBER if value.isdigit() else VALUE


# pytest's comparison of the values: "E   AssertionError: assert ['  Zoe@Mail.net '] == ['Zoe@Mail.net']"
COMPARED = re.compile(r"^E\s+(?:AssertionError: )?assert (.+) == (.+)$", re.M)


def trimmed_values(source: str, start: int, end: int, failures: list[str]) -> list[SmallFix]:
    """Where a failing test's values differ only in surrounding whitespace (`['  Zoe@Mail.net ']` against
    `['Zoe@Mail.net']`), the name that lines start..end of `source` collect or return, stripped: each
    `out.append(x)`, `seen.add(x)`, `yield x` and `return x` with `x.strip()`, as whole new file texts. The input
    was cleaned for the comparison but kept as it came."""
    if not any(_untrimmed(got, want) for got, want in _compared(failures)):
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("append", "add"):
            value = node.args[0] if len(node.args) == 1 else None
        elif isinstance(node, (ast.Return, ast.Yield)):
            value = node.value
        else:
            continue
        if isinstance(value, ast.Name) and start <= value.lineno <= end:
            names.append(value)
    lines = source.splitlines(keepends=True)
    out = []
    for name in sorted(names, key=lambda n: (n.lineno, n.col_offset)):
        line = lines[name.lineno - 1].encode("utf-8")
        fixed = (line[:name.end_col_offset] + b".strip()" + line[name.end_col_offset:]).decode("utf-8")
        text = _with_line(lines, name.lineno, fixed)
        out.append(SmallFix(name.lineno, "strip", f"line {name.lineno}: `{name.id}` -> `{name.id}.strip()`", text))
    return out


def skipped_blanks(source: str, start: int, end: int, failures: list[str]) -> list[SmallFix]:
    """Where a failing test's list has blank strings that the expected one lacks (`['', 'a@b.c']` against
    `['a@b.c']`), each `out.append(x)` of lines start..end of `source` guarded by `if x:`, as whole new file texts."""
    if not any(_without_blanks(got, want) for got, want in _compared(failures)):
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    out = []
    for node in ast.walk(tree):
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "append"
                and len(call.args) == 1 and start <= node.lineno <= end and node.lineno == node.end_lineno):
            continue
        line = lines[node.lineno - 1]
        indent, value = indent_of(line), ast.get_source_segment(source, call.args[0])
        guarded = f"{indent}if {value}:\n{indent}    {line.lstrip()}"
        text = _with_line(lines, node.lineno, guarded)
        out.append(SmallFix(node.lineno, "blank", f"line {node.lineno}: appends only a non-blank `{value}`", text))
    return out


def _compared(failures: list[str]) -> list[tuple[str, str]]:
    """(got, want) of every `assert got == want` pytest shows in the failures, as it shows them."""
    return [pair for failure in failures for pair in COMPARED.findall(failure)]


def _literals(got: str, want: str) -> tuple | None:
    """Both values as Python values, or None when either is not a literal."""
    try:
        return ast.literal_eval(got), ast.literal_eval(want)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _untrimmed(got: str, want: str) -> bool:
    """Whether the values `got` and `want` (as pytest shows them) differ, but not once their strings are stripped:
    `'1h 30m'` against `'1h30m'` is a separator, not untrimmed input."""
    values = _literals(got, want)
    return values is not None and values[0] != values[1] and _stripped(values[0]) == _stripped(values[1])


def _stripped(value):
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)):
        return [_stripped(v) for v in value]
    if isinstance(value, dict):
        return {k: _stripped(v) for k, v in value.items()}
    return value


def _without_blanks(got: str, want: str) -> bool:
    """Whether the list `got` is the list `want` with blank strings added (both as pytest shows them)."""
    values = _literals(got, want)
    if values is None:
        return False
    got_list, want_list = values
    if not (isinstance(got_list, list) and isinstance(want_list, list)) or got_list == want_list:
        return False
    return [x for x in got_list if not (isinstance(x, str) and not x.strip())] == want_list


def separators(source: str, start: int, end: int, failures: list[str]) -> list[SmallFix]:
    """Where a failing test's values differ only in whitespace within them (`'1h 30m'` against `'1h30m'`), the
    one-token fixes of lines start..end that change a separator string."""
    if not any(_spaced(got, want) for got, want in _compared(failures)):
        return []
    quoted = [f'`"{separator}"`' for separator in SEPARATORS] + [f"`'{separator}'`" for separator in SEPARATORS]
    return [f for f in small_fixes(source, start, end, limit=500)
            if f.kind == "literal" and any(f"{q} -> " in f.description for q in quoted)]


def _spaced(got: str, want: str) -> bool:
    return got != want and re.sub(r"\s", "", got) == re.sub(r"\s", "", want) and not _untrimmed(got, want)


def evident_fixes(source: str, start: int, end: int, failures: list[str]) -> list[SmallFix]:
    """The fixes the failing tests' values point at (whitespace kept, blanks collected, both, a separator, and a
    returned print), the exception that escaped a handler and a method read as a value, a few where the one-token
    kinds are many: they are tried first."""
    trimmed = trimmed_values(source, start, end, failures)
    both = [SmallFix(b.line, "strip+blank", f"{t.description}; {b.description}", b.text)
            for t in trimmed for b in skipped_blanks(t.text, start, end, failures)]
    return (both + trimmed + skipped_blanks(source, start, end, failures) + separators(source, start, end, failures)
            + returned_none(source, start, end) + escaped_exceptions(source, start, end, failures)
            + shared_class_state(source, start, end) + unread_properties(source, start, end, failures))


MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque"}


def shared_class_state(source: str, start: int, end: int) -> list[SmallFix]:
    """A class of lines start..end of `source` that binds a mutable value in its body (`_handlers = {}`), which
    every instance then shares, with the value made per instance in `__init__` (added where the class has none),
    as one whole new file text per class. Data classes are left alone: they reject such defaults themselves."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    out = []
    for cls in ast.walk(tree):
        if not (isinstance(cls, ast.ClassDef) and start <= cls.lineno <= end and not cls.decorator_list):
            continue
        shared = [n for n in cls.body if isinstance(n, (ast.Assign, ast.AnnAssign)) and _mutable(n.value)
                  and assigned_name(n) and n.lineno == n.end_lineno]
        if not shared:
            continue
        indent = re.match(r"\s*", lines[shared[0].lineno - 1]).group(0)
        init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"
                     and n.args.args), None)
        receiver = init.args.args[0].arg if init else "self"
        moved = [f"{receiver}.{ast.get_source_segment(source, n).strip()}\n" for n in shared]
        changed = list(lines)
        if init:
            first = init.body[0]
            at = first.end_lineno if ast.get_docstring(init) is not None and len(init.body) > 1 else first.lineno - 1
            inner = re.match(r"\s*", lines[init.body[-1].lineno - 1]).group(0)
            changed[at:at] = [inner + line for line in moved]
        else:
            at = shared[-1].end_lineno
            changed[at:at] = [f"{indent}def __init__(self):\n"] + [f"{indent}    {line}" for line in moved]
        for node in sorted(shared, key=lambda n: -n.lineno):
            del changed[node.lineno - 1]
        names = ", ".join(f"`{assigned_name(n)}`" for n in shared)
        out.append(SmallFix(shared[0].lineno, "state", f"line {shared[0].lineno}: {names} of class `{cls.name}` "
                                                       "made per instance, in `__init__`", "".join(changed)))
    return out


def _mutable(value) -> bool:
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    func = value.func if isinstance(value, ast.Call) else None
    return isinstance(func, ast.Name) and func.id in MUTABLE_CALLS or isinstance(func, ast.Attribute) and \
        func.attr in MUTABLE_CALLS


# the exception a test ended with, as pytest names it: "E   decimal.InvalidOperation: [...]", "E   KeyError: 'x'"
RAISED = re.compile(r"^E\s+((?:[a-z_]\w*\.)*([A-Z]\w*))(?::|$)", re.M)
NOT_ESCAPED = {"AssertionError", "Failed", "SystemExit"}  # the test's own verdicts, not the code's


def escaped_exceptions(source: str, start: int, end: int, failures: list[str]) -> list[SmallFix]:
    """Where a failing test ended with an exception that an `except` of lines start..end of `source` does not name
    (`decimal.InvalidOperation` through `except ValueError:`, the handler meant for it), that handler naming it
    instead and then as well, with an import of it where the module lacks one, as whole new file texts. Only a
    builtin exception, one the module binds, or one of the standard library's modules is named."""
    raised = {}
    for failure in failures:
        for qualified, name in RAISED.findall(failure):
            module = qualified.rpartition(".")[0]
            if name not in NOT_ESCAPED and (not module or module.split(".")[0] in sys.stdlib_module_names):
                raised.setdefault(name, module)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    bound = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    bound |= {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    lines = source.splitlines(keepends=True)
    out = []
    for name, module in raised.items():
        builtin = not module and isinstance(getattr(builtins, name, None), type) and issubclass(
            getattr(builtins, name), BaseException)
        if not (builtin or module or name in bound):  # a class of the project's that this module does not import
            continue
        needs_import = module and name not in bound
        for handler in ast.walk(tree):
            if not (isinstance(handler, ast.ExceptHandler) and handler.type is not None
                    and start <= handler.lineno <= end and handler.type.lineno == handler.type.end_lineno):
                continue
            caught = ast.get_source_segment(source, handler.type)
            if name in re.findall(r"\w+", caught):
                continue
            listed = caught[1:-1] if isinstance(handler.type, ast.Tuple) else caught
            line = lines[handler.type.lineno - 1].encode("utf-8")
            for new in (name, f"({listed}, {name})"):
                fixed = (line[:handler.type.col_offset] + new.encode("utf-8")
                         + line[handler.type.end_col_offset:]).decode("utf-8")
                changed = lines[:handler.type.lineno - 1] + [fixed] + lines[handler.type.lineno:]
                if needs_import:
                    after = imports[-1].end_lineno if imports else 0
                    changed[after:after] = [f"from {module} import {name}\n"]
                out.append(SmallFix(handler.lineno, "except", f"line {handler.lineno}: `except {caught}` -> "
                                                              f"`except {new}`", "".join(changed)))
    return out


# calls that return None: `return print(x)` returns None, not what the function returns elsewhere
RETURNS_NONE = {"print", "append", "extend", "sort", "update", "add", "clear"}


def returned_none(source: str, start: int, end: int) -> list[SmallFix]:
    """`return print(x)` (or another call that returns None) in lines start..end of `source`, as the call and then
    each constant the function returns elsewhere (`print(x)` / `return 0`), as whole new file texts."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    out = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        returns = [n for n in ast.walk(function) if isinstance(n, ast.Return)]
        constants = list(dict.fromkeys(ast.unparse(n.value) for n in returns if isinstance(n.value, ast.Constant)))
        for node in returns:
            call = node.value
            if not (isinstance(call, ast.Call) and start <= node.lineno <= end and node.lineno == node.end_lineno):
                continue
            name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            if name not in RETURNS_NONE:
                continue
            indent = indent_of(lines[node.lineno - 1])
            code = ast.get_source_segment(source, call)
            for value in constants:
                text = _with_line(lines, node.lineno, f"{indent}{code}\n{indent}return {value}\n")
                out.append(SmallFix(node.lineno, "none", f"line {node.lineno}: `return {name}(...)` -> "
                                                         f"`{name}(...)` and `return {value}`", text))
    return out


def unread_properties(source: str, start: int, end: int, failures: list[str]) -> list[SmallFix]:
    """Each method of lines start..end of `source` that takes only `self` and that a failing test read as a value
    (pytest shows the bound method by its name: `where T = Matrix([[1, 2]]).T`), made a property, as whole new file
    texts: the `@property` that a new attribute-like method was written without."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    out = []
    for cls in ast.walk(tree):
        for method in cls.body if isinstance(cls, ast.ClassDef) else []:
            if not (isinstance(method, ast.FunctionDef) and start <= method.lineno <= end and not method.decorator_list
                    and [a.arg for a in method.args.posonlyargs + method.args.args] == ["self"]
                    and not (method.args.vararg or method.args.kwonlyargs or method.args.kwarg)):
                continue
            read = re.compile(rf"^E\s+\+\s+where {method.name} = .*\.{method.name}$", re.M)
            if any(read.search(failure) for failure in failures):
                line = lines[method.lineno - 1]
                text = _with_line(lines, method.lineno, f"{indent_of(line)}@property\n{line}")
                out.append(SmallFix(method.lineno, "property",
                                    f"line {method.lineno}: `{method.name}` made a property (a test reads it as a value)",
                                    text))
    return out


def _with_line(lines: list[str], lineno: int, new: str) -> str:
    """The file of `lines` (each with its line end) with line `lineno` (1-based) replaced by `new`."""
    return "".join(lines[:lineno - 1] + [new] + lines[lineno:])
