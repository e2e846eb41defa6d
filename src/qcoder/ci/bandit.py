"""Security findings from bandit (when installed), on the new version of the changed Python files.

Only issues on changed lines are reported: old code is not the change's fault. The model may explain or
dismiss them, never invent them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from qcoder.ci.diff import Change
from qcoder.ci.findings import Finding

SEVERITY = {"HIGH": "error", "MEDIUM": "warning", "LOW": "note"}


def available() -> bool:
    return importlib.util.find_spec("bandit") is not None


def run_bandit(change: Change) -> list[Finding]:
    files = [f for f in change.files if f.path.endswith(".py") and f.new_text is not None]
    if not files or not available():
        return []
    with tempfile.TemporaryDirectory(prefix="qcoder-bandit-") as tmp:
        for f in files:  # the new versions, wherever they come from (worktree, index, a revision)
            target = Path(tmp) / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.new_text, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "bandit", "-q", "-f", "json", *[f.path for f in files]],
                              cwd=tmp, capture_output=True, text=True, timeout=300)
    try:
        results = json.loads(proc.stdout).get("results", [])
    except json.JSONDecodeError:
        return []
    findings = []
    for r in results:
        path, line = r.get("filename", "").removeprefix("./"), int(r.get("line_number", 0))
        changed = change.file(path)
        if changed is None or line not in changed.added:
            continue
        findings.append(Finding(path, line, SEVERITY.get(r.get("issue_severity"), "warning"), "security",
                                r.get("issue_text", "").strip(), changed.lines[line - 1].strip(),
                                source="bandit", rule=r.get("test_id", "")))
    return findings
