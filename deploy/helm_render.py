#!/usr/bin/env python3
"""Render deploy/helm/qcoder without Helm: the subset of Go templates and Helm functions the chart uses.

    python deploy/helm_render.py                                  # like `helm template` with the default values
    python deploy/helm_render.py --set engine=vllm --set vllm.tensorParallelSize=8
    python deploy/helm_render.py -f my-values.yaml
    python deploy/helm_render.py --write-kustomize deploy/k8s     # regenerate the kustomize base

Helm is the real renderer; this one exists so that machines without Helm (CI, this project's dev boxes) can check
the chart: the values are validated against values.schema.json first, as Helm does, then every template is
rendered. The kustomize base in deploy/k8s is this renderer's output for the default values, less the API key
Secret (kustomize users create it, see docs/deploy.md), so the two cannot drift apart.

Supported: {{ pipeline }}, {{- trimming -}}, comments, if / else if / else, range over a list or map, define and
include, variables ($x := ..., $x = ...), parenthesized calls, and the functions in FUNCTIONS. Anything else is
an error, never a silent mis-render.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import string
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent / "helm" / "qcoder"


class TemplateError(Exception):
    pass


# --- parsing ----------------------------------------------------------------------------------------------------

ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)


def _lex(source: str) -> list[tuple[str, str]]:
    """[('text', s) | ('action', s)], with `{{-` / `-}}` trimming applied to the neighbouring text."""
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        items.append(("text", text))
        body = m.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            items.append(("action", body))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = source[pos:]
    items.append(("text", tail.lstrip() if trim_next else tail))
    return [item for item in items if item != ("text", "")]


def _parse(items: list[tuple[str, str]], defines: dict, stop=("end",)) -> tuple[list, str]:
    """Nodes up to one of the `stop` keywords; returns (nodes, the keyword action that stopped it)."""
    nodes: list = []
    while items:
        kind, body = items.pop(0)
        if kind == "text":
            nodes.append(("text", body))
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in stop or (word == "else" and "else" in stop):
            return nodes, body
        if word == "if":
            nodes.append(_parse_if(body[2:].strip(), items, defines))
        elif word == "range":
            inner, end = _parse(items, defines)
            nodes.append(("range", body[5:].strip(), inner))
        elif word == "define":
            name = json.loads(body[6:].strip())
            defines[name], _ = _parse(items, defines)
        elif word in ("end", "else", "with", "template", "block"):
            raise TemplateError(f"unsupported or unbalanced action: {{{{ {body} }}}}")
        else:
            nodes.append(("expr", body))
    if stop != ("<eof>",):
        raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
    return nodes, ""


def _parse_if(condition: str, items: list, defines: dict) -> tuple:
    branches = []
    while True:
        body, stopped = _parse(items, defines, stop=("end", "else"))
        branches.append((condition, body))
        if stopped == "end":
            return ("if", branches)
        rest = stopped[4:].strip()  # after "else"
        if rest.startswith("if "):
            condition = rest[3:].strip()
        elif not rest:
            condition = None
        else:
            raise TemplateError(f"unsupported: {{{{ {stopped} }}}}")


# --- expressions ------------------------------------------------------------------------------------------------

TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<open>\()|(?P<close>\))|(?P<pipe>\|)'
    r"|(?P<assign>:?=)|(?P<num>-?\d+(?:\.\d+)?)|(?P<word>[$.]?[A-Za-z_$][\w.$]*|\.|\$))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot parse {text!r} at {text[pos:]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


class Scope:
    def __init__(self, dollar):
        self.frames: list[dict] = [{"$": dollar}]

    def get(self, name: str):
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise TemplateError(f"undefined variable {name}")

    def set(self, name: str, value, declare: bool) -> None:
        if declare:
            self.frames[-1][name] = value
            return
        for frame in reversed(self.frames):
            if name in frame:
                frame[name] = value
                return
        raise TemplateError(f"assignment to undeclared variable {name}")


def _field(value, path: list[str]):
    for key in path:
        if key == "":
            continue
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TemplateError(f"cannot read .{key} of {type(value).__name__}")
        value = value.get(key)
    return value


def _truthy(value) -> bool:
    return bool(value) if value is not None else False


class Renderer:
    def __init__(self, defines: dict, root: dict):
        self.defines = defines
        self.root = root

    def render(self, nodes: list, dot, scope: Scope) -> str:
        out = []
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "expr":
                value = self.statement(node[1], dot, scope)
                out.append(_format(value))
            elif kind == "if":
                for condition, body in node[1]:
                    if condition is None or _truthy(self.pipeline(_tokens(condition), dot, scope)):
                        out.append(self.nested(body, dot, scope))
                        break
            elif kind == "range":
                items = self.pipeline(_tokens(node[1]), dot, scope) or []
                values = [items[k] for k in sorted(items)] if isinstance(items, dict) else list(items)
                out.extend(self.nested(node[2], item, scope) for item in values)
        return "".join(out)

    def nested(self, nodes, dot, scope: Scope) -> str:
        scope.frames.append({})
        try:
            return self.render(nodes, dot, scope)
        finally:
            scope.frames.pop()

    def statement(self, text: str, dot, scope: Scope):
        tokens = _tokens(text)
        if len(tokens) > 2 and tokens[0][0] == "word" and tokens[0][1].startswith("$") and tokens[1][0] == "assign":
            scope.set(tokens[0][1], self.pipeline(tokens[2:], dot, scope), declare=tokens[1][1] == ":=")
            return None
        return self.pipeline(tokens, dot, scope)

    def pipeline(self, tokens: list, dot, scope: Scope):
        commands, depth, current = [], 0, []
        for token in tokens:
            depth += token[0] == "open"
            depth -= token[0] == "close"
            if token[0] == "pipe" and depth == 0:
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
        value, piped = None, False
        for command in commands:
            value = self.command(command, dot, scope, (value,) if piped else ())
            piped = True
        return value

    def command(self, tokens: list, dot, scope: Scope, piped: tuple):
        args, i = [], 0
        while i < len(tokens):
            kind, text = tokens[i]
            if kind == "open":
                depth, j = 1, i + 1
                while depth:
                    depth += tokens[j][0] == "open"
                    depth -= tokens[j][0] == "close"
                    j += 1
                args.append(("value", self.pipeline(tokens[i + 1 : j - 1], dot, scope)))
                i = j
                continue
            args.append((kind, text))
            i += 1
        head_kind, head = args[0]
        if head_kind == "word" and head in FUNCTIONS:
            values = [self.operand(kind, text, dot, scope) for kind, text in args[1:]] + list(piped)
            if head == "include":
                return self.include(*values)
            return FUNCTIONS[head](*values)
        if len(args) > 1 or piped:
            raise TemplateError(f"unknown function or bad command: {' '.join(str(t) for _, t in args)}")
        return self.operand(head_kind, head, dot, scope)

    def operand(self, kind: str, text, dot, scope: Scope):
        if kind == "value":
            return text
        if kind == "str":
            return json.loads(text)
        if kind == "raw":
            return text[1:-1]
        if kind == "num":
            return float(text) if "." in text else int(text)
        if text in ("true", "false"):
            return text == "true"
        if text == "nil":
            return None
        if text == ".":
            return dot
        if text.startswith("."):
            return _field(dot, text[1:].split("."))
        if text.startswith("$"):
            name, _, path = text.partition(".")
            return _field(scope.get(name), path.split(".")) if path else scope.get(name)
        raise TemplateError(f"unknown function {text!r}")

    def include(self, name: str, dot) -> str:
        if name not in self.defines:
            raise TemplateError(f"no template named {name!r}")
        return self.render(self.defines[name], dot, Scope(dot))  # in a template, `$` is its argument


def _format(value) -> str:
    """Go's default formatting of a value in template output (Helm prints nil as an empty string)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, (dict, list)):
        raise TemplateError("printing a map or list needs toYaml")
    return str(value)


def _go_float(value: float) -> str:
    """Go's %v of a float64: the shortest digits, in exponent form from 1e+06 up (Helm prints 1048576 from values as
    1.048576e+06, hence `| int` in the templates)."""
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp = len(digits) + exponent - 1
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return f"{'-' if sign else ''}{Decimal(repr(abs(value))).normalize():f}"


def _as_helm_numbers(value):
    """Helm reads values through JSON: every number is a float64."""
    if isinstance(value, dict):
        return {k: _as_helm_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_helm_numbers(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _as_json_numbers(value):
    """toYaml goes through JSON too: a float64 with no fraction is written as an integer."""
    if isinstance(value, dict):
        return {k: _as_json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class TemplateFail(TemplateError):
    """The chart's own `fail`: a bad combination of values."""


def _fail(message: str):
    raise TemplateFail(message)


def _to_yaml(value) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(_as_json_numbers(value), default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(width: int, text: str) -> str:
    return "\n".join(" " * width + line for line in str(text).split("\n"))


def _and(*values):
    for value in values:
        if not _truthy(value):
            return value
    return values[-1]


def _or(*values):
    for value in values:
        if _truthy(value):
            return value
    return values[-1]


def _index(value, *keys):
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else value[key]
    return value


FUNCTIONS = {
    "include": None,  # handled by the renderer: it needs the defines
    "toYaml": _to_yaml,
    "int": lambda value: int(value or 0),
    "nindent": lambda width, text: "\n" + _indent(width, text),
    "indent": _indent,
    "quote": lambda value: json.dumps(_format(value)),
    "default": lambda fallback, value=None: value if _truthy(value) else fallback,
    "eq": lambda a, *others: any(a == b for b in others),
    "ne": lambda a, b: a != b,
    "not": lambda value: not _truthy(value),
    "and": _and,
    "or": _or,
    "index": _index,
    "b64enc": lambda text: base64.b64encode(str(text).encode()).decode(),
    "randAlphaNum": lambda n: "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n)),
    # `helm template` and first installs see no cluster objects: lookup gives an empty map, as there.
    "lookup": lambda api_version, kind, namespace, name: {},
    "fail": _fail,
}


# --- the chart --------------------------------------------------------------------------------------------------


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _set(values: dict, assignment: str) -> dict:
    """--set a.b=value, the value parsed as YAML (numbers, booleans, strings)."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise TemplateError(f"--set wants KEY=VALUE, got {assignment!r}")
    override: dict = {}
    node = override
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = yaml.safe_load(raw) if raw else ""
    return _merge(values, override)


def chart_values(overrides: dict | None = None, chart: Path = CHART) -> dict:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    return _merge(values, overrides or {})


def validate_values(values: dict, chart: Path = CHART) -> None:
    """As Helm does before rendering: the merged values against values.schema.json."""
    import jsonschema

    schema = json.loads((chart / "values.schema.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=lambda e: list(e.path))
    if errors:
        where = ".".join(str(p) for p in errors[0].path) or "(root)"
        raise TemplateError(f"values don't meet values.schema.json: {where}: {errors[0].message}")


def render_chart(values: dict, chart: Path = CHART, namespace: str = "default") -> list[dict]:
    """Every object the chart creates for these (already merged) values, in template file order."""
    validate_values(values, chart)
    defines: dict = {}
    files = sorted((chart / "templates").glob("*"))
    parsed = {}
    for path in files:
        nodes, _ = _parse(_lex(path.read_text()), defines, stop=("<eof>",))
        parsed[path.name] = nodes
    root = {
        "Values": _as_helm_numbers(values),
        "Release": {"Name": values.get("name", "qcoder"), "Namespace": namespace, "Service": "Helm"},
        "Chart": yaml.safe_load((chart / "Chart.yaml").read_text()),
    }
    renderer = Renderer(defines, root)
    objects = []
    for name, nodes in parsed.items():
        if name.startswith("_") or not name.endswith((".yaml", ".yml")):
            continue
        text = renderer.render(nodes, root, Scope(root))
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise TemplateError(f"{name} renders to invalid YAML: {exc}\n{text}") from exc
        objects.extend(doc for doc in docs if doc)
    return objects


# --- output ---------------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (shell scripts) as literal blocks, as they are written in the templates."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)


def dump(obj: dict) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


# --- the kustomize base -----------------------------------------------------------------------------------------

KUSTOMIZE_HEADER = (
    "# Generated from deploy/helm/qcoder by\n"
    "#   python deploy/helm_render.py --write-kustomize deploy/k8s\n"
    "# Do not edit: change the chart and regenerate (tests/deploy checks that the two agree).\n"
)
# Objects the kustomize base leaves out: the chart makes a random API key, kustomize cannot (docs/deploy.md).
NOT_IN_KUSTOMIZE = {("Secret", "qcoder-api-key")}


# Optional parts of the chart, as kustomize components (deploy/k8s/components/<name>): the values that turn them on.
COMPONENTS = {
    "autoscaling": {"qcoder": {"autoscaling": {"enabled": True}}},
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True}}},
}


def _key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _object_files(objects: list[dict]) -> dict[str, str]:
    files = {}
    for obj in objects:
        name = f"{obj['kind'].lower()}.yaml"
        if name in files:
            raise TemplateError(f"two {obj['kind']} objects; name the files differently")
        files[name] = KUSTOMIZE_HEADER + dump(obj)
    return files


def json_patch(old, new, path: str = "") -> list[dict]:
    """RFC 6902 operations turning `old` into `new` (maps key by key; lists and scalars replaced whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops = []
        for key in old:
            where = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in new:
                ops.append({"op": "remove", "path": where})
            else:
                ops += json_patch(old[key], new[key], where)
        for key in new:
            if key not in old:
                ops.append(
                    {"op": "add", "path": f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}", "value": new[key]}
                )
        return ops
    return [] if old == new else [{"op": "replace", "path": path, "value": new}]


def kustomize_files(objects: list[dict], components: dict[str, list[dict]] | None = None) -> dict[str, str]:
    """Relative path -> text for deploy/k8s: the base (one file per object, kustomization.yaml) and, for each
    component, its new objects and patches to the base's objects, given each component's full rendering."""
    base = [obj for obj in objects if _key(obj) not in NOT_IN_KUSTOMIZE]
    files = _object_files(base)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = KUSTOMIZE_HEADER + dump(kustomization)
    by_key = {_key(obj): obj for obj in base}
    for name, rendered in (components or {}).items():
        added = [obj for obj in rendered if _key(obj) not in by_key and _key(obj) not in NOT_IN_KUSTOMIZE]
        own = _object_files(added)
        patches = []
        for obj in rendered:
            if _key(obj) in by_key and (ops := json_patch(by_key[_key(obj)], obj)):
                kind, obj_name = _key(obj)
                patches.append({"target": {"kind": kind, "name": obj_name}, "patch": dump(ops)})
        component = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "resources": sorted(own)}
        if patches:
            component["patches"] = patches
        files.update({f"components/{name}/{file}": text for file, text in own.items()})
        files[f"components/{name}/kustomization.yaml"] = KUSTOMIZE_HEADER + dump(component)
    return files


def kustomize_tree(chart: Path = CHART) -> dict[str, str]:
    """Everything --write-kustomize writes: the default rendering and each component's."""
    components = {name: render_chart(chart_values(values, chart), chart) for name, values in COMPONENTS.items()}
    return kustomize_files(render_chart(chart_values(chart=chart), chart), components)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the qcoder Helm chart without Helm.")
    parser.add_argument("-f", "--values", type=Path, action="append", default=[], help="a values file (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one value (repeatable)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--write-kustomize", type=Path, metavar="DIR", help="write the kustomize base for the defaults")
    args = parser.parse_args(argv)
    try:
        values = chart_values()
        for path in args.values:
            values = _merge(values, yaml.safe_load(path.read_text()) or {})
        for assignment in args.set:
            values = _set(values, assignment)
        objects = render_chart(values, namespace=args.namespace)
    except (TemplateError, OSError, yaml.YAMLError) as exc:
        print(f"helm_render: error: {exc}", file=sys.stderr)
        return 2
    if args.write_kustomize:
        if args.values or args.set:
            parser.error("--write-kustomize renders the default values; drop -f and --set")
        for name, text in kustomize_tree().items():
            path = args.write_kustomize / name
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, text)
        return 0
    print("".join("---\n" + dump(obj) for obj in objects), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
