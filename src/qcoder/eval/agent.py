"""`qcoder eval agent`: run a coding agent headless on each task, in a fresh workspace, and judge it by the tests.

Each run: copy the task's project to a temporary folder (`agent_tasks.prepare`), hash the protected files,
start the agent as a real subprocess (`qcoder -p TASK -y --output-format stream-json`, or any `--agent-cmd`), then run
the task's test command there. Outcomes:

- solved: the tests pass and no protected file changed;
- unsolved: the agent finished, but the tests fail or it touched the tests;
- error: the agent crashed or reported an endpoint error, it ran past the hard time limit, or the harness
  itself failed (tests that hang on the agent's code are the agent's doing: unsolved). Errors are counted apart from unsolved runs, and `--resume` runs them again.

One JSON row per run goes to `agent.jsonl` as it finishes (the agent's output in `logs/`), then
`summary.json`, a table and `agent.png`.
"""

from __future__ import annotations

import json
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from qcoder.eval import agent_tasks, report
from qcoder.eval.agent_tasks import AgentTask, HarnessError, Outcome

ROWS_FILE = "agent.jsonl"
FINISHED = ("solved", "unsolved")
DIFF_CHARS = 20000
# qcoder's headless exit codes (agent/headless.py): 0 success, 1 failure or error, 3 a limit was reached
QCODER_EXITS = (0, 1, 3)
HARD_LIMIT_GRACE_S = 300.0


@dataclass
class AgentSettings:
    """How the agent under test is started."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    agent_cmd: str | None = None  # e.g. 'mini -y -t {task}'; {task}, {task_file}, {workspace} are filled in
    max_turns: int | None = None
    timeout_s: float = agent_tasks.DEFAULT_TIMEOUT_S  # per run, unless the task sets its own

    def describe(self) -> dict:
        return {"agent": self.agent_cmd or "qcoder", "model": self.model, "base_url": self.base_url,
                "max_turns": self.max_turns, "timeout_s": self.timeout_s}


@dataclass
class RunPlan:
    output: Path
    runs: int = 1
    workers: int = 1
    resume: bool = False
    progress: bool = True
    keep_workspaces: bool = False


def run(tasks: list[AgentTask], agent: AgentSettings, plan: RunPlan, source: str) -> dict:
    rows_path = report.open_rows_file(plan.output, ROWS_FILE, plan.resume)
    done = {key for key, row in report.read_rows(rows_path, ("task", "run")).items() if row["outcome"] in FINISHED}
    todo = [(t, i) for t in tasks for i in range(plan.runs) if (t.name, i) not in done]
    total = len(tasks) * plan.runs
    lock = threading.Lock()
    tracker = report.ProgressTracker(total, total - len(todo), plan.progress, label="agent",
                                     is_pass=lambda row: row["outcome"] == "solved")

    def one(job: tuple[AgentTask, int]) -> None:
        row = run_one(job[0], job[1], agent, plan)
        with lock, rows_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        tracker.generated(row["prompt_tokens"] + row["completion_tokens"])
        tracker.checked(row)

    with tracker, ThreadPoolExecutor(max(1, plan.workers), thread_name_prefix="agent-eval") as pool:
        list(pool.map(one, todo))
    rows = report.read_rows(rows_path, ("task", "run"))
    summary = summarize(tasks, rows, plan.runs, {"source": source, **agent.describe()})
    (plan.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, plan.output / "agent.png")
    print_table(summary)
    return summary


def run_one(task: AgentTask, index: int, agent: AgentSettings, plan: RunPlan) -> dict:
    row = {"task": task.name, "run": index, "outcome": "error", "reason": "", "agent_exit": None,
           "agent_status": None, "seconds": 0.0, "prompt_tokens": 0, "completion_tokens": 0, "tokens_known": False,
           "turns": None, "tool_calls": None, "tests_passed": None, "tests_modified": [], "test_seconds": None,
           "diff": "", "test_output": "", "call_checks": {}, "passing_before": None, "passing_after": None}
    scratch = Path(tempfile.mkdtemp(prefix=f"qcoder-agent-{_safe(task.name)}-"))
    workdir = scratch / "workspace"
    try:
        base = agent_tasks.prepare(task, workdir)
        before = agent_tasks.protected_files(task, workdir)
        row["passing_before"] = agent_tasks.run_tests_in_copy(task, workdir, scratch).tests_passing
        outcome = _start_agent(task, workdir, scratch, agent)
        _write_log(plan.output, task, index, outcome)
        row["seconds"] = outcome.seconds
        row.update(_read_agent_output(outcome, agent))
        row["tests_modified"] = agent_tasks.changed_between(before, agent_tasks.protected_files(task, workdir))
        row["diff"] = agent_tasks.diff(workdir, base)[:DIFF_CHARS]
        if row["reason"]:  # the agent failed: no verdict from the tests
            return row
        tests = agent_tasks.run_tests(task, workdir)
        row.update(tests_passed=tests.exit_code == 0, test_seconds=tests.seconds, test_output=tests.tail(),
                   passing_after=tests.tests_passing)
        if row["tests_modified"]:
            row.update(outcome="unsolved", reason=f"protected files changed: {', '.join(row['tests_modified'])}")
        else:
            failed = "tests ran past their time limit" if tests.timed_out else f"tests fail (exit {tests.exit_code})"
            row.update(outcome="solved" if tests.exit_code == 0 else "unsolved",
                       reason="" if tests.exit_code == 0 else failed)
        return row
    except (HarnessError, OSError) as exc:
        row["reason"] = f"harness: {exc}"
        return row
    finally:
        if plan.keep_workspaces:
            row["workspace"] = str(workdir)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _start_agent(task: AgentTask, workdir: Path, scratch: Path, agent: AgentSettings) -> Outcome:
    timeout = task.timeout_s or agent.timeout_s
    extra = {"OPENAI_API_KEY": agent.api_key} if agent.api_key else {}
    env = agent_tasks.tool_environment(extra)
    if agent.agent_cmd:
        task_file = scratch / "task.txt"
        task_file.write_text(task.text + "\n")
        command = (agent.agent_cmd.replace("{task_file}", shlex.quote(str(task_file)))
                   .replace("{workspace}", shlex.quote(str(workdir))).replace("{task}", shlex.quote(task.text)))
        return agent_tasks.run_process(command, workdir, timeout, shell=True, env=env)
    # stream-json: its last line is the same result object `json` prints, and a run killed at the hard limit
    # still leaves the steps it took in the log
    command = [sys.executable, "-m", "qcoder", "-p", task.text, "-y", "--output-format", "stream-json",
               "--workspace", str(workdir), "--timeout", f"{timeout:g}"]
    for flag, value in (("--model", agent.model), ("--base-url", agent.base_url), ("--max-turns", agent.max_turns)):
        if value is not None:
            command += [flag, str(value)]
    # qcoder checks its own --timeout before each model call; the hard limit leaves room for the last call,
    # which on a busy CPU can take minutes
    return agent_tasks.run_process(command, workdir, timeout + max(HARD_LIMIT_GRACE_S, timeout / 2), env=env)


def _read_agent_output(outcome: Outcome, agent: AgentSettings) -> dict:
    """Exit, status and tokens from the agent's output; `reason` is set when the run counts as an error."""
    fields: dict = {"agent_exit": outcome.exit_code}
    if agent.agent_cmd:
        result = _last_json_object(outcome.stdout)
    else:  # qcoder's stream ends with the result; without it the run did not end normally
        events = _json_objects(outcome.stdout)
        result = next((e for e in reversed(events) if e.get("type") == "final"), None)
        fields["turns"] = sum(e.get("type") == "assistant" for e in events)
    if result is not None:
        fields.update(_tokens(result))
    if outcome.timed_out:
        return {**fields, "reason": f"the agent ran past the hard time limit ({outcome.seconds:.0f} s)"}
    if agent.agent_cmd:
        if outcome.exit_code != 0:
            return {**fields, "reason": f"the agent exited with status {outcome.exit_code}: "
                                        f"{outcome.stderr.strip()[-300:]}"}
        return fields
    if result is None or outcome.exit_code not in QCODER_EXITS:
        return {**fields, "reason": f"the agent crashed (exit {outcome.exit_code}): {outcome.stderr.strip()[-300:]}"}
    fields.update(agent_status=result.get("status"), turns=result.get("turns"), tool_calls=result.get("tool_calls"),
                  call_checks=result.get("call_checks") or {})
    if result.get("status") == "error":
        fields["reason"] = f"the agent reported an error: {str(result.get('reason'))[:300]}"
    return fields


def _json_objects(text: str) -> list[dict]:
    objects = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            objects.append(obj)
    return objects


def _last_json_object(text: str) -> dict | None:
    objects = _json_objects(text)
    return objects[-1] if objects else None


def _tokens(result: dict) -> dict:
    """prompt/completion tokens from qcoder's `tokens`, or an OpenAI-style `usage`, wherever the agent put it."""
    for holder in (result.get("tokens"), result.get("usage"), result):
        if isinstance(holder, dict) and isinstance(holder.get("completion_tokens"), int):
            return {"prompt_tokens": int(holder.get("prompt_tokens") or 0),
                    "completion_tokens": holder["completion_tokens"], "tokens_known": True}
    return {}


def _write_log(output: Path, task: AgentTask, index: int, outcome: Outcome) -> None:
    logs = output / "logs"
    logs.mkdir(exist_ok=True)
    stem = f"{_safe(task.name)}.{index}"
    (logs / f"{stem}.stdout").write_text(outcome.stdout)
    (logs / f"{stem}.stderr").write_text(outcome.stderr)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# ---- the run folder ------------------------------------------------------------------------------------------

# ---- summary, table, plot ------------------------------------------------------------------------------------

def summarize(tasks: list[AgentTask], rows: dict[tuple[str, int], dict], runs: int, settings: dict) -> dict:
    per_task, all_rows = {}, []
    for task in tasks:
        mine = [rows[(task.name, i)] for i in range(runs) if (task.name, i) in rows]
        all_rows += mine
        per_task[task.name] = _counts(mine)
    summary = {"benchmark": "agent", "settings": settings, "tasks": len(tasks), "runs_per_task": runs,
               **_counts(all_rows),
               "tasks_solved": sum(v["solved"] > 0 for v in per_task.values()),
               "per_task": per_task}
    return summary


def _counts(rows: list[dict]) -> dict:
    outcomes = {o: sum(r["outcome"] == o for r in rows) for o in ("solved", "unsolved", "error")}
    judged = outcomes["solved"] + outcomes["unsolved"]
    solved_times = [r["seconds"] for r in rows if r["outcome"] == "solved"]
    return {"runs": len(rows), **outcomes,
            "solve_rate": outcomes["solved"] / len(rows) if rows else None,
            "solve_rate_judged": outcomes["solved"] / judged if judged else None,  # errors left out
            "median_seconds": _median([r["seconds"] for r in rows]),
            "median_seconds_solved": _median(solved_times),
            "total_seconds": round(sum(r["seconds"] for r in rows), 1),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
            "completion_tokens": sum(r["completion_tokens"] for r in rows),
            "tokens_known": bool(rows) and all(r["tokens_known"] for r in rows),
            "call_checks": {k: sum(r.get("call_checks", {}).get(k, 0) for r in rows)
                            for k in ("valid", "invalid", "rescued")},
            # unsolved runs that left fewer tests passing than the task had before the agent: it made things worse
            "left_worse": sum(r["outcome"] == "unsolved" and _fewer_passing(r) for r in rows)}


def _fewer_passing(row: dict) -> bool:
    before, after = row.get("passing_before"), row.get("passing_after")
    return before is not None and after is not None and after < before


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    runs = summary["runs_per_task"]
    settings = summary["settings"]
    who = f"qcoder, {settings.get('model') or 'default model'}" if settings["agent"] == "qcoder" else (
        settings["agent"] if len(settings["agent"]) <= 40 else settings["agent"][:37] + "...")
    table = Table(title=f"agent eval ({who}): {summary['tasks']} tasks x {runs} runs")
    for column in ("task", "solved", "error", "median s", "tokens"):
        table.add_column(column, justify="left" if column == "task" else "right")

    def cells(c: dict) -> list[str]:
        tokens = f"{c['prompt_tokens'] + c['completion_tokens']:,}" if c["tokens_known"] else "-"
        median = f"{c['median_seconds']:.0f}" if c["median_seconds"] is not None else "-"
        return [f"{c['solved']}/{c['runs']}", str(c["error"]) if c["error"] else "", median, tokens]

    for name, counts in summary["per_task"].items():
        table.add_row(name, *cells(counts))
    table.add_section()
    table.add_row("all", *cells(summary))
    console = Console()
    console.print(table)
    rate = f"{summary['solve_rate']:.1%}" if summary["solve_rate"] is not None else "-"
    solved_median = summary["median_seconds_solved"]
    console.print(f"solved {summary['solved']}/{summary['runs']} runs ({rate}), unsolved {summary['unsolved']}, "
                  f"[{'red' if summary['error'] else 'default'}]error {summary['error']}[/]; "
                  f"tasks solved at least once: {summary['tasks_solved']}/{summary['tasks']}; median time "
                  f"{summary['median_seconds'] or 0:.0f} s (solved runs: "
                  f"{'-' if solved_median is None else f'{solved_median:.0f} s'})")
    if summary.get("unsolved"):
        console.print(f"unsolved runs that left fewer tests passing than before the agent: "
                      f"{summary.get('left_worse', 0)}/{summary['unsolved']}")
    checks = summary.get("call_checks") or {}
    made = checks.get("valid", 0) + checks.get("invalid", 0)
    if made:
        console.print(f"tool calls: {checks['valid']}/{made} valid ({checks['valid'] / made:.1%}), "
                      f"{checks.get('rescued', 0)} rescued from plain text")


def plot(summary: dict, path: Path) -> None:
    """Left: each task's runs as solved / unsolved / error. Right: median wall time per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["per_task"])
    counts = list(summary["per_task"].values())
    height = max(3.0, 0.3 * len(names) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    offset = [0] * len(names)
    for outcome, colour in (("solved", "tab:green"), ("unsolved", "tab:gray"), ("error", "tab:red")):
        values = [c[outcome] for c in counts]
        left.barh(names, values, left=offset, color=colour, label=outcome)
        offset = [a + b for a, b in zip(offset, values, strict=True)]
    left.set_xlabel("runs")
    left.xaxis.get_major_locator().set_params(integer=True)
    left.invert_yaxis()
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 * 6 / height), ncol=3, frameon=False)
    rate = summary["solve_rate"] or 0.0
    left.set_title(f"agent eval ({summary['settings'].get('model') or summary['settings']['agent']}): "
                   f"solved {summary['solved']}/{summary['runs']} ({rate:.0%}), error {summary['error']}")
    right.barh(names, [c["median_seconds"] or 0 for c in counts], color="tab:blue")
    right.set_xlabel("median wall time per run (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
