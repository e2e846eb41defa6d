"""Headless runs (`qcoder -p TASK`): no questions asked, output as text, one JSON object, or JSON lines.

Anything that needs approval is denied (the model is told why) unless the approval mode allows it.
Exit status: 0 success, 1 failure or error, 3 a limit was reached.
"""

from __future__ import annotations

import json
import sys

from qcoder.agent.factory import build

EXIT_CODES = {"success": 0, "failure": 1, "error": 1, "limit": 3}


def run_headless(args, task: str) -> int:
    fmt = args.output_format
    out = sys.stdout

    def emit(event: str, **data) -> None:
        if fmt == "stream-json":
            out.write(json.dumps({"type": event, **data}, default=str) + "\n")
            out.flush()
        elif fmt == "text" and event == "delta":
            out.write(data["text"])
            out.flush()
        elif fmt == "text" and event == "tool_call":
            print(f"\n> {data['name']} {data['arguments'][:200]}", file=sys.stderr)

    built = build(args, emit=emit)
    try:
        result = built.agent.run(task)
    finally:
        built.close()
    if fmt == "json":
        out.write(json.dumps(result.to_dict(), default=str) + "\n")
    elif fmt == "text":
        if not result.final_message.endswith("\n"):
            out.write("\n")
        test = result.test_result
        tests = f", tests {'pass' if test['passed'] else 'FAIL'}" if test else ""
        print(f"[{result.status}: {result.reason}; {result.turns} turns, {result.tool_calls} tool calls{tests}]",
              file=sys.stderr)
    return EXIT_CODES[result.status]
