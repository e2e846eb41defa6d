"""Review findings: parsed from what the model wrote (hostile input), then checked against the change.

A finding survives only when its file was changed, its line exists in the new version, and its quoted code
is on that line (or a few lines away, or anywhere in the code the model was shown, where the model miscounted:
the finding is moved there). Findings on the same line and category are merged.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from qcoder.ci.diff import Change

SEVERITIES = ("note", "warning", "error")  # in rising order
CATEGORIES = ("bug", "security", "test gap", "style")
QUOTE_SLACK = 5  # lines a quoted line may be away from the claimed line
MIN_PARTIAL_QUOTE = 6  # a shorter quote ("x", "i") must be the whole line: as a piece it would match anywhere


@dataclass
class Finding:
    file: str
    line: int
    severity: str
    category: str
    message: str
    quote: str = ""
    source: str = "model"  # "model" or "bandit"
    rule: str = ""  # a rule id (bandit's test id) or ""
    test: str = ""  # a test the finding claims would fail
    evidence: str = ""  # what running that test, or the example call, showed
    call: str = ""  # the model's example call of the changed function that the change breaks

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Checked:
    kept: list[Finding] = field(default_factory=list)
    dropped: list[tuple[dict, str]] = field(default_factory=list)  # (raw finding, why)


def parse_model_findings(text: str) -> list[dict]:
    """The JSON array of findings in a reply (fenced or bare); [] when there is none."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    candidates = re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.S) + [text]
    for chunk in candidates:
        whole = chunk.find("{") >= 0 and chunk.find("{") < chunk.find("[")
        start, end = (chunk.find("{"), chunk.rfind("}")) if whole else (chunk.find("["), chunk.rfind("]"))
        if start < 0 or end <= start:
            continue
        try:
            data = json.loads(chunk[start:end + 1])
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):  # {"findings": [...]}, the shape the review's JSON schema asks for
            data = data.get("findings")
        if isinstance(data, list):
            return [item for item in data if isinstance(item, dict)]
    return []


def _normalize(code: str) -> str:
    return " ".join(code.strip().strip("`").split())


def _quote_line(quote: str) -> str:
    """The first non-blank line of a quote, stripped of any "12|" or "12+|" prefix the model copied from the
    prompt; old lines it copied ("-| ...") are skipped: they are not in the new version."""
    for line in quote.splitlines():
        if re.match(r"^\s*-\|", line):
            continue
        line = re.sub(r"^\s*\d+\s*\+?\s*[|:]\s?", "", line)
        if line.strip():
            return _normalize(line)
    return ""


def _line_number(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def locate(quote: str, lines: list[str], window: range, claimed: int | None, changed: set[int]) -> int | None:
    """The line in `window` that holds `quote`: a whole-line match before a partial one, then a changed line
    before an unchanged one, then the one nearest the claimed line. None when no line holds it."""
    scored = []
    for n in window:
        text = _normalize(lines[n - 1])
        if quote == text:
            exact = True
        elif (len(quote) >= MIN_PARTIAL_QUOTE and quote in text) or (len(text) > 3 and text in quote):
            exact = False
        else:
            continue
        scored.append((not exact, n not in changed, abs(n - claimed) if claimed else 0, n))
    return min(scored)[-1] if scored else None


def check_finding(raw: dict, change: Change, span: tuple[int, int] | None = None) -> tuple[Finding | None, str]:
    """(the checked finding, "") or (None, why it was dropped). With `span` (the lines the model was shown),
    the quoted code decides the line anywhere in the span, so the model need not count lines; without one,
    the quote must be within a few lines of the line claimed."""
    path = str(raw.get("file") or raw.get("path") or "").strip().removeprefix("./").removeprefix("b/")
    changed = change.file(path)
    if changed is None or changed.new_text is None:
        return None, f"file {path!r} is not part of the change"
    lines = changed.lines
    line = _line_number(raw.get("line"))
    quote = _quote_line(str(raw.get("quote") or raw.get("code") or ""))
    cited = re.fullmatch(r"(?i)line\s*(\d+)\s*\+?", quote)
    if cited:  # "line 4": a line number where the code should be; it must then name a changed line
        quote, line = "", line or int(cited.group(1))
    if line is not None and not 1 <= line <= len(lines):
        return None, f"line {line} does not exist in {path} ({len(lines)} lines)"
    if quote:
        if span:
            window = range(max(1, span[0]), min(len(lines), span[1]) + 1)
        elif line is not None:
            window = range(max(1, line - QUOTE_SLACK), min(len(lines), line + QUOTE_SLACK) + 1)
        else:
            return None, "no line number"
        found = locate(quote, lines, window, line, changed.added)
        if found is None:
            return None, f"quoted code is not at {path}:{line}" if line else f"quoted code is not in {path}"
        line = found
    elif line is None:
        return None, "no line number"
    elif line not in changed.added:
        return None, f"no quoted code, and {path}:{line} is not a changed line"
    severity = str(raw.get("severity") or "warning").lower()
    severity = severity if severity in SEVERITIES else "warning"
    category = str(raw.get("category") or "bug").lower().replace("_", " ")
    category = category if category in CATEGORIES else "bug"
    message = " ".join(str(raw.get("message") or raw.get("explanation") or "").split())
    if not message:
        return None, "no explanation"
    test = str(raw.get("test") or "").strip()
    call = str(raw.get("call") or "").strip()
    return Finding(path, line, severity, category, message[:1000], lines[line - 1].strip(), test=test,
                   call=call), ""


def merge_duplicates(findings: list[Finding]) -> list[Finding]:
    """One finding per (file, line, category): the highest severity, each distinct explanation once."""
    merged: dict[tuple, Finding] = {}
    for f in findings:
        key = (f.file, f.line, f.category)
        if key not in merged:
            merged[key] = f
            continue
        kept = merged[key]
        if SEVERITIES.index(f.severity) > SEVERITIES.index(kept.severity):
            kept.severity = f.severity
        if f.message not in kept.message:
            kept.message = f"{kept.message} {f.message}"
        kept.source = kept.source if kept.source == f.source else f"{kept.source}+{f.source}"
        kept.rule = kept.rule or f.rule
    return sorted(merged.values(), key=lambda f: (f.file, f.line))


def check_all(raws: list[dict], change: Change, span: tuple[int, int] | None = None) -> Checked:
    checked = Checked()
    for raw in raws:
        finding, why = check_finding(raw, change, span)
        if finding is None:
            checked.dropped.append((raw, why))
        else:
            checked.kept.append(finding)
    checked.kept = merge_duplicates(checked.kept)
    return checked


def at_or_above(findings: list[Finding], level: str) -> list[Finding]:
    return [f for f in findings if SEVERITIES.index(f.severity) >= SEVERITIES.index(level)]
