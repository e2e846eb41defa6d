"""Review output as SARIF 2.1.0 (what code-scanning UIs ingest), validated by tests against the vendored
OASIS schema (sarif-schema-2.1.0.json beside this file)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from qcoder import __version__
from qcoder.ci.findings import Finding

SCHEMA_PATH = Path(__file__).with_name("sarif-schema-2.1.0.json")
SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL = {"error": "error", "warning": "warning", "note": "note"}


def rule_id(f: Finding) -> str:
    if f.rule:
        return f"bandit/{f.rule}"
    return "qcoder/" + re.sub(r"[^a-z0-9]+", "-", f.category)


def to_sarif(findings: list[Finding]) -> dict:
    rules = {}
    for f in findings:
        rules.setdefault(rule_id(f), {"id": rule_id(f), "name": rule_id(f).split("/")[-1],
                                      "shortDescription": {"text": f"{f.category} ({f.source})"},
                                      "properties": {"tags": [f.category]}})
    results = []
    for f in findings:
        result = {
            "ruleId": rule_id(f),
            "level": LEVEL[f.severity],
            "message": {"text": f.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": f.file, "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": f.line, "snippet": {"text": f.quote}},
            }}],
            "properties": {"category": f.category, "source": f.source},
        }
        if f.test:
            result["properties"]["failingTest"] = f.test
        results.append(result)
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "qcoder review", "version": __version__, "informationUri":
                                "https://github.com/QwenLM/Qwen3-Coder", "rules": list(rules.values())}},
            "results": results,
        }],
    }


def dumps(findings: list[Finding]) -> str:
    return json.dumps(to_sarif(findings), indent=2)
