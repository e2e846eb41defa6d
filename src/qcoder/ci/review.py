"""`qcoder review`: the model reviews a change; only findings that survive checking are reported."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from qcoder.agent.tools.shell import cap, scrubbed_env
from qcoder.ci.bandit import run_bandit
from qcoder.ci.context import Unit, review_units
from qcoder.ci.diff import Change
from qcoder.ci.findings import CATEGORIES, SEVERITIES, Finding, check_all, merge_duplicates, parse_model_findings
from qcoder.ci.witness import run_call

REVIEW_PROMPT = """You review a change to `{path}` ({title}). Report real bugs and security problems that the \
change introduces. Do not report things that are fine: a change that keeps the behaviour (a refactor) has no bug.
Lines marked `+` are new or changed; lines marked `-` are the old code they replaced (gone from the new version).

Answer with JSON only: {{"findings": [...]}}, one object per problem, or {{"findings": []}} when the change looks \
correct. Each object has "quote" (the new line that is wrong, copied exactly), "message" (what is wrong and \
why), "call" (a call of the changed function whose result the change breaks), "severity" (error, warning or \
note), "category" (bug, security, test gap or style) and "test" (a test id path::name that fails because of \
it, or ""). For example, about another change:
{{"findings": [{{"quote": "    return title.lower().replace(' ', '')", "message": "Drops the spaces instead of \
turning them into dashes, so the words run together.", "call": "slugify('Hello World')", "severity": "error", \
"category": "bug", "test": ""}}]}}

{code}"""

TRIAGE_PROMPT = """A security scanner reported these issues in a code change. For each one, say whether it \
is a real risk here ("keep") or a false alarm ("dismiss"), with a one-sentence explanation. Answer with a JSON \
array only: [{{"id": 0, "verdict": "keep|dismiss", "explanation": "..."}}]

{issues}"""

MAX_UNITS = 60  # changed functions or blocks reviewed in one run; a bigger change is reviewed in part
PARALLEL_UNITS = 4
MAX_FINDINGS_PER_UNIT = 5
SAMPLE_TEMPERATURE = 0.7
TEST_ID = re.compile(r"^[\w./-]+\.py(::[\w\[\].-]+)*$")


@dataclass
class ReviewResult:
    change: Change
    findings: list[Finding] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)  # {"finding": raw, "reason": why}
    model: str = ""


def progress(message: str) -> None:
    print(f"qcoder: {message}", file=sys.stderr, flush=True)


def review(client, repo: Path, change: Change, *, test_cmd: str | None = None, use_bandit: bool = True,
           samples: int = 1, agree: int = 1, max_tokens: int = 768) -> ReviewResult:
    """One request per review unit (a changed function, or changed lines outside one). With `samples` > 1 each
    unit gets that many sampled replies and a finding needs `agree` of them on its line: a small model's one-off
    guesses drop out, while what it sees every time stays."""
    result = ReviewResult(change, model=getattr(client, "model", ""))
    units = review_units(repo, change)
    if not units:
        return result
    if len(units) > MAX_UNITS:
        progress(f"the change has {len(units)} changed functions or blocks; reviewing the first {MAX_UNITS}")
        units = units[:MAX_UNITS]
    progress(f"reviewing {len(units)} changed function(s) or block(s) in {len(change.files)} file(s)")
    with ThreadPoolExecutor(max_workers=PARALLEL_UNITS) as pool:  # the engine batches concurrent requests
        checked = list(pool.map(lambda u: _review_unit(client, change, u, samples, agree, max_tokens), units))
    findings = []
    for kept, dropped in checked:
        findings += kept
        result.dropped += dropped
    if test_cmd:
        findings = _back_test_claims(findings, repo, test_cmd, result.dropped)
    if use_bandit:
        findings += _triage(client, run_bandit(change), result.dropped)
    result.findings = merge_duplicates(findings)
    return result


def _review_unit(client, change: Change, unit: Unit, samples: int, agree: int,
                 max_tokens: int) -> tuple[list[Finding], list[dict]]:
    """(the findings on this unit that survive checking and agreement, the dropped ones with why)."""
    messages = [{"role": "user", "content": REVIEW_PROMPT.format(path=unit.path, title=unit.title,
                                                                   code=unit.render())}]
    schema = finding_schema(change.file(unit.path).lines[unit.first - 1:unit.last])
    if samples > 1:
        replies = client.sample(messages, samples, temperature=SAMPLE_TEMPERATURE, max_tokens=max_tokens,
                                json_schema=schema)
    else:
        replies = [client.chat(messages, temperature=0.0, max_tokens=max_tokens, json_schema=schema)]
    votes: dict[int, list[Finding]] = {}  # line -> the findings on it, one per reply at most
    dropped = []
    for reply in replies:
        raws = [{**raw, "file": unit.path} for raw in parse_model_findings(reply.content)]  # the unit's file
        checked = check_all(raws, change, (unit.first, unit.last))
        dropped += [{"finding": raw, "reason": why} for raw, why in checked.dropped]
        for finding in {f.line: f for f in checked.kept}.values():
            votes.setdefault(finding.line, []).append(finding)
    kept = []
    for line, findings in votes.items():
        if len(findings) < agree:
            dropped += [{"finding": f.to_dict(), "reason": f"{len(findings)} of {len(replies)} replies flagged "
                                                           f"line {line}; {agree} needed"} for f in findings]
        elif why := _refuted(change, findings, (unit.first, unit.last)):
            dropped.append({"finding": findings[0].to_dict(), "reason": why})
        else:
            kept.append(findings[0])  # the others say the same in other words
    return kept, dropped


def finding_schema(lines: list[str]) -> dict:
    """The reply's JSON schema. A quote must be one of the lines shown, so it always names a real line; the
    built-in engine enforces this while decoding (small models otherwise paraphrase, or copy the prompt)."""
    quotes = list(dict.fromkeys(line for line in lines if line.strip()))
    quote = {"type": "string", "enum": quotes} if quotes else {"type": "string"}
    item = {"type": "object", "additionalProperties": False,
            "required": ["quote", "message", "call", "severity", "category", "test"],
            "properties": {"quote": quote, "message": {"type": "string"}, "call": {"type": "string"},
                           "severity": {"type": "string", "enum": list(SEVERITIES)},
                           "category": {"type": "string", "enum": list(CATEGORIES)}, "test": {"type": "string"}}}
    return {"type": "object", "additionalProperties": False, "required": ["findings"],
            "properties": {"findings": {"type": "array", "items": item, "maxItems": MAX_FINDINGS_PER_UNIT}}}


def _refuted(change: Change, findings: list[Finding], span: tuple[int, int]) -> str:
    """Why the findings' own example calls show no bug, or "" when they do not. A claimed bug in Python code
    is refuted when the calls given for it all return the same before and after the change; a differing
    call becomes the first finding's evidence (and puts it on a changed line: see _to_changed_line)."""
    first = findings[0]
    if first.category != "bug" or not first.file.endswith(".py"):
        return ""
    same = []
    for call in dict.fromkeys(f.call for f in findings if f.call):
        witness = run_call(change.file(first.file), call)
        if not witness.comparable:
            continue
        if not witness.same:
            first.evidence = f"{call}: {witness.old} before the change, {witness.new} after"
            _to_changed_line(first, change.file(first.file), span)
            return ""
        same.append(f"{call} gives {witness.new} before and after the change")
    return "the model's example shows no change: " + "; ".join(same) if same else ""


def _to_changed_line(finding: Finding, changed, span: tuple[int, int]) -> None:
    """A call that behaves differently before and after the change proves the changed lines cause it: old and
    new file differ only there. A finding quoted on an unchanged line of the unit (small models often point at
    the `return` below the real culprit) moves to the nearest changed line, where the fix belongs."""
    added = sorted(n for n in changed.added if span[0] <= n <= span[1]) if changed else []
    if not added or finding.line in added:
        return
    nearest = min(added, key=lambda n: (abs(n - finding.line), n))
    finding.message = f"{finding.message} (The model pointed at line {finding.line}; the changed line is {nearest}.)"
    finding.line, finding.quote = nearest, changed.lines[nearest - 1].strip()


def _back_test_claims(findings: list[Finding], repo: Path, test_cmd: str, dropped: list[dict]) -> list[Finding]:
    """A finding that names a failing test keeps its claim only if the test does fail when run."""
    kept = []
    for f in findings:
        if not f.test:
            kept.append(f)
            continue
        if not TEST_ID.match(f.test) or not (repo / f.test.split("::")[0]).is_file():
            f.test = ""  # the test named does not exist: the finding stands on its own, without the claim
            kept.append(f)
            continue
        progress(f"running {f.test} to check a finding")
        try:
            proc = subprocess.run([*shlex.split(test_cmd), f.test], cwd=repo, env=scrubbed_env(), capture_output=True,
                                  text=True, errors="replace", timeout=600)
            failed, output = proc.returncode != 0, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            failed, output = True, "timed out"
        if failed:
            f.evidence = cap(output)[-2000:]
            kept.append(f)
        else:
            dropped.append({"finding": f.to_dict(), "reason": f"claimed {f.test} fails, but it passes"})
    return kept


def _triage(client, issues: list[Finding], dropped: list[dict]) -> list[Finding]:
    if not issues:
        return []
    listing = "\n".join(f"{i}: {f.file}:{f.line} [{f.rule}] {f.message}\n    {f.quote}" for i, f in enumerate(issues))
    progress(f"asking the model about {len(issues)} bandit issue(s)")
    reply = client.chat([{"role": "user", "content": TRIAGE_PROMPT.format(issues=listing)}],
                        temperature=0.0, max_tokens=1024)
    verdicts = {}
    for item in parse_model_findings(reply.content):
        try:
            verdicts[int(item.get("id"))] = item
        except (TypeError, ValueError):
            continue
    kept = []
    for i, f in enumerate(issues):
        verdict = verdicts.get(i, {})
        explanation = " ".join(str(verdict.get("explanation") or "").split())[:600]
        if str(verdict.get("verdict", "")).lower() == "dismiss":
            dropped.append({"finding": f.to_dict(), "reason": f"dismissed by the model: {explanation}"})
            continue
        if explanation:
            f.message = f"{f.message} {explanation}"
        kept.append(f)
    return kept


def to_json(result: ReviewResult) -> str:
    return json.dumps({"change": result.change.description, "model": result.model,
                       "findings": [f.to_dict() for f in result.findings], "dropped": result.dropped}, indent=2)
