"""Review output for people: plain text for a terminal, Markdown for a pull-request comment."""

from __future__ import annotations

from qcoder.ci.review import ReviewResult

ICON = {"error": "🔴", "warning": "🟠", "note": "🔵"}


def to_text(result: ReviewResult) -> str:
    if not result.findings:
        return f"No findings ({result.change.description}; {len(result.dropped)} unverified dropped)."
    out = []
    for f in result.findings:
        out.append(f"{f.file}:{f.line}: {f.severity}: [{f.category}] {f.message}")
        out.append(f"    {f.quote}")
        if f.test:
            out.append(f"    failing test: {f.test}")
        elif f.call and f.evidence:
            out.append(f"    shown by running {f.evidence}")
    out.append(f"{len(result.findings)} finding(s) ({result.change.description}; "
               f"{len(result.dropped)} unverified dropped).")
    return "\n".join(out)


def to_markdown(result: ReviewResult) -> str:
    if not result.findings:
        return f"### qcoder review\n\nNo findings on the {result.change.description}."
    rows = ["### qcoder review", "", f"{len(result.findings)} finding(s) on the {result.change.description}.", "",
            "| | Location | Category | Finding |", "|---|---|---|---|"]
    for f in result.findings:
        message = f.message.replace("|", "\\|")
        if f.test:
            message += f" (fails: `{f.test}`)"
        elif f.call and f.evidence:
            message += f" (run: `{f.evidence.replace('|', '/')}`)"
        rows.append(f"| {ICON[f.severity]} {f.severity} | `{f.file}:{f.line}` | {f.category} | {message} |")
    if result.dropped:
        rows += ["", f"<sub>{len(result.dropped)} model finding(s) dropped: they did not check out against the code.</sub>"]
    return "\n".join(rows)
