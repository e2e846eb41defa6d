"""Headless runs (`qcoder -p TASK`): no questions asked, output as text, one JSON object, or JSON lines.

Anything that needs approval is denied (the model is told why) unless the approval mode allows it.
Exit status: 0 success, 1 failure or error, 3 a limit was reached.
"""

from __future__ import annotations

import json
import sys

from qcoder.agent.display import ProseFilter, describe
from qcoder.agent.factory import build

EXIT_CODES = {"success": 0, "failure": 1, "error": 1, "limit": 3}


def run_headless(args, task: str) -> int:
    fmt = args.output_format
    out = sys.stdout

    prose = ProseFilter(lambda text: (out.write(text), out.flush()))
    shown: list[str] = []

    def emit(event: str, **data) -> None:
        if fmt == "stream-json":
            out.write(json.dumps({"type": event, **data}, default=str) + "\n")
            out.flush()
        elif fmt == "text" and event == "delta":
            prose.feed(data["text"])
        elif fmt == "text" and event == "assistant":
            shown.append(prose.end(data["content"]))
        elif fmt == "text":
            line = describe(event, data)
            if line:
                print(line, file=sys.stderr, flush=True)

    built = build(args, emit=emit)
    try:
        result = built.agent.run(task)
    finally:
        built.close()
    if fmt == "json":
        out.write(json.dumps(result.to_dict(), default=str) + "\n")
    elif fmt == "text":
        final = result.final_message.strip()
        if final and final not in "".join(shown):  # e.g. the repair path's answer, which no reply streamed
            out.write(final + "\n")
        test = result.test_result
        tests = f", tests {'pass' if test['passed'] else 'FAIL'}" if test else ""
        print(f"[{result.status}: {result.reason}; {result.turns} turns, {result.tool_calls} tool calls{tests}]",
              file=sys.stderr)
    return EXIT_CODES[result.status]
