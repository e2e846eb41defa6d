"""Mutants of a Python module: one small change each, made on the syntax tree.

Operators: comparison flip (< to >=, == to !=, ...), off-by-one (an integer constant n to n+1), constant change
(True/False swapped, a string emptied, arithmetic + to -), and removed statement (a statement replaced by `pass`).
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult, ast.Div: ast.Mult}


@dataclass
class Mutant:
    line: int
    operator: str
    description: str
    source: str


def _sites(tree: ast.AST):
    """(node path key, operator, description) for every place a mutation applies."""
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in FLIP:
                    yield node, ("compare", i), line, f"{type(op).__name__} -> {FLIP[type(op)].__name__}"
        elif isinstance(node, ast.BinOp) and type(node.op) in ARITH:
            yield node, ("arith", 0), line, f"{type(node.op).__name__} -> {ARITH[type(node.op)].__name__}"
        elif isinstance(node, ast.Constant) and not isinstance(getattr(node, "parent", None), ast.Expr):
            if isinstance(node.value, bool):
                yield node, ("bool", 0), line, f"{node.value} -> {not node.value}"
            elif isinstance(node.value, int):
                yield node, ("int", 0), line, f"{node.value} -> {node.value + 1}"
            elif isinstance(node.value, str) and node.value:
                yield node, ("str", 0), line, f"{node.value[:20]!r} -> ''"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.For | ast.While | ast.If | ast.With):
            body = node.body
            if len(body) > 1 or not isinstance(body[0], ast.Pass):
                for i, stmt in enumerate(body):
                    if not (i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
                        yield node, ("remove", i), stmt.lineno, f"removed: {ast.unparse(stmt).splitlines()[0][:40]}"


def _apply(node: ast.AST, kind: tuple[str, int]) -> None:
    what, i = kind
    if what == "compare":
        node.ops[i] = FLIP[type(node.ops[i])]()
    elif what == "arith":
        node.op = ARITH[type(node.op)]()
    elif what == "bool":
        node.value = not node.value
    elif what == "int":
        node.value = node.value + 1
    elif what == "str":
        node.value = ""
    elif what == "remove":
        node.body[i] = ast.Pass(lineno=node.body[i].lineno, col_offset=node.body[i].col_offset)


def mutants(source: str, lines: set[int] | None = None, limit: int = 40) -> list[Mutant]:
    """Up to `limit` mutants, spread evenly over the sites, only on `lines` when given (lines no test runs
    cannot kill a mutant). Docstrings and type annotations are left alone."""
    tree = ast.parse(source)
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child.parent = parent
    annotations = {id(n) for a in ast.walk(tree) for n in ast.walk(getattr(a, "annotation", None) or ast.Pass())
                   if getattr(a, "annotation", None) is not None}
    sites = [(i, kind, line, desc) for i, (node, kind, line, desc) in enumerate(_sites(tree))
             if id(node) not in annotations and (lines is None or line in lines)]
    if len(sites) > limit:
        step = len(sites) / limit
        sites = [sites[int(k * step)] for k in range(limit)]
    out = []
    for index, kind, line, desc in sites:
        copied = copy.deepcopy(tree)
        node = next(n for i, (n, *_rest) in enumerate(_sites(copied)) if i == index)
        _apply(node, kind)
        try:
            text = ast.unparse(copied)
        except Exception:  # a mutation the unparser cannot express: skip it
            continue
        out.append(Mutant(line, kind[0], desc, text))
    return out
