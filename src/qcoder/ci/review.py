"""`qcoder review`: the model reviews a change; only findings that survive checking are reported."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from qcoder.agent.tools.shell import cap, scrubbed_env
from qcoder.ci.bandit import run_bandit
from qcoder.ci.context import build_context
from qcoder.ci.diff import Change
from qcoder.ci.findings import Finding, check_all, merge_duplicates, parse_model_findings

REVIEW_PROMPT = """You review a code change. Report real problems introduced by the change: bugs, security \
issues, missing tests for new behaviour, and serious style problems. Do not report things that are fine.

Answer with a JSON array only, one object per finding:
[{{"file": "path", "line": 12, "quote": "the exact code on that line", "severity": "error|warning|note",
  "category": "bug|security|test gap|style", "message": "one paragraph: what is wrong and why",
  "test": "optional: a test id (path::name) that fails because of this problem"}}]
Use the line numbers shown at the left of the new version. Answer [] when the change looks correct.

{context}"""

TRIAGE_PROMPT = """A security scanner reported these issues in a code change. For each one, say whether it \
is a real risk here ("keep") or a false alarm ("dismiss"), with a one-sentence explanation. Answer with a JSON \
array only: [{{"id": 0, "verdict": "keep|dismiss", "explanation": "..."}}]

{issues}"""

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
           max_tokens: int = 1536) -> ReviewResult:
    result = ReviewResult(change, model=getattr(client, "model", ""))
    if not any(f.new_text is not None for f in change.files):
        return result
    context = build_context(repo, change)
    progress(f"reviewing {len(change.files)} file(s), {sum(len(f.added) for f in change.files)} changed lines")
    reply = client.chat([{"role": "user", "content": REVIEW_PROMPT.format(context=context)}],
                        temperature=0.0, max_tokens=max_tokens)
    checked = check_all(parse_model_findings(reply.content), change)
    result.dropped += [{"finding": raw, "reason": why} for raw, why in checked.dropped]
    findings = checked.kept
    if test_cmd:
        findings = _back_test_claims(findings, repo, test_cmd, result.dropped)
    if use_bandit:
        findings += _triage(client, run_bandit(change), result.dropped)
    result.findings = merge_duplicates(findings)
    return result


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
