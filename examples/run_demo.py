"""The main job behind `make run`: the agent fixes a failing test in a fresh copy of examples/textstats.

Steps: make sure the model is in the cache (pulling it if needed), copy the demo project to a new
folder under runs/, show its failing test, run `qcoder -p "..." -y` there, show the diff the agent
made and run the tests once more. Exit status 0 when the job ran; the test result is printed.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.syntax import Syntax

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "textstats"
TASK = ("The test suite fails:\n\n{failure}\n\nFind the bug in textstats.py (the tests are right), fix it with `edit`, "
        "and run the tests to check.")


def run_tests(workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "--no-header", "-p", "no:cacheprovider"],
                          cwd=workspace, capture_output=True, text=True)


def snapshot(workspace: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(workspace.glob("*.py"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model for the agent (default: the agent's default, qwen2.5-coder-1.5b-instruct)")
    parser.add_argument("--max-turns", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300,
                        help="the agent's time limit in seconds; within it the repair path may sample more rounds")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="where the project copy goes")
    args = parser.parse_args()
    console = Console()

    from qcoder.model.registry import AGENT_MODEL, resolve_model

    model = args.model or AGENT_MODEL
    console.rule(f"[bold]qcoder main job[/]: fix a failing test with {model}")
    resolve_model(model)  # pulls the model into the cache on first use (with a progress bar)

    workspace = args.out.resolve() / f"textstats-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.copytree(PROJECT, workspace, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    before = snapshot(workspace)
    first = run_tests(workspace)
    console.print(f"workspace: {workspace}")
    console.print(f"tests before: [red]{first.stdout.strip().splitlines()[-1]}[/]")

    console.rule("agent")
    started = time.monotonic()
    # the task carries the failing test's report, as a user pasting it would: small models need the pointer
    failure = "\n".join(line for line in first.stdout.splitlines() if line.startswith(("E ", "FAILED", ">")))
    agent = subprocess.Popen([sys.executable, "-m", "qcoder", "-p", TASK.format(failure=failure), "-y", "--trust",
                              "--model", model, "--max-turns", str(args.max_turns), "--timeout", f"{args.timeout:g}",
                              "--workspace", str(workspace)],
                             stdout=subprocess.PIPE, text=True, bufsize=1)
    answer = []
    for line in agent.stdout:  # shown as it streams, and kept: the agent's answer may already carry the diff
        sys.stdout.write(line)
        sys.stdout.flush()
        answer.append(line)
    agent.wait()
    elapsed = time.monotonic() - started

    console.rule("what changed")
    after = snapshot(workspace)
    diff = "".join(
        "".join(difflib.unified_diff(before.get(name, "").splitlines(True), after.get(name, "").splitlines(True),
                                     f"a/{name}", f"b/{name}"))
        for name in sorted(set(before) | set(after))
    )
    if not diff:
        console.print("(no file changed)")
    elif diff.strip() in "".join(answer):  # the agent ended with this very diff: list the files, don't repeat it
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                old, new = before.get(name, "").splitlines(), after.get(name, "").splitlines()
                changes = list(difflib.unified_diff(old, new, lineterm="", n=0))[2:]
                plus = sum(c.startswith("+") for c in changes)
                minus = sum(c.startswith("-") for c in changes)
                console.print(f"{name}: [green]+{plus}[/] [red]-{minus}[/] (the diff is shown above)")
    else:
        console.print(Syntax(diff, "diff"))

    console.rule("result")
    final = run_tests(workspace)
    summary = final.stdout.strip().splitlines()[-1] if final.stdout.strip() else final.stderr.strip()
    colour = "green" if final.returncode == 0 else "red"
    console.print(f"agent exit status {agent.returncode} after {elapsed:.0f} s")
    console.print(f"tests after: [{colour}]{summary}[/]  ({'FIXED' if final.returncode == 0 else 'NOT FIXED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
