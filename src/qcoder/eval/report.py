"""Progress bar, summary (pass@k per metric), summary.json, a terminal table and a PNG plot."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from qcoder.errors import QcoderError
from qcoder.eval.datasets import Dataset, Task
from qcoder.eval.passk import mean_pass_at_k, reportable_ks

STATUS_ORDER = ("pass", "fail", "timeout", "memory", "crash", "error", "sandbox_error")
# Outcomes that say nothing about the model's answer (a request failed, the sandbox could not start, the
# harness broke): such a sample is not scored, it is counted as an error next to the scores.
ERROR_STATUSES = ("error", "sandbox_error")


def is_error(row: dict) -> bool:
    return row.get("status") in ERROR_STATUSES


# ---- the rows file every run appends to (one JSON object a line) ------------------------------------------

def open_rows_file(output: Path, name: str, resume: bool) -> Path:
    """The run's rows file, ready to append to; refuses to mix a new run into old results unless resuming."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / name
    if path.exists() and path.stat().st_size and not resume:
        raise QcoderError(f"{path} already has results; pass --resume to continue it or choose another --output")
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a") as f:
            f.write("\n")  # end the line an interrupted run left unfinished
    return path


def read_rows(path: Path, key: tuple[str, str]) -> dict[tuple, dict]:
    """The latest row for each key (a retried error replaces its first try); a line cut short by an interrupted
    run is skipped, so that item is simply redone."""
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            rows[(row[key[0]], row[key[1]])] = row
    return rows


def run_problems(rows: list[dict], tokens: int) -> list[str]:
    """Why a run's numbers cannot be trusted as they stand; [] when they can."""
    problems = []
    errored = [r for r in rows if is_error(r)]
    if errored:
        first = errored[0].get("error", "")[:200]
        problems.append(f"{len(errored)} of {len(rows)} samples errored (not scored); first: {first}")
    if rows and tokens == 0:
        problems.append("the completions total 0 tokens: no answer was ever generated")
    return problems


class ProgressTracker:
    """rich progress: samples checked, pass rate so far, generation tokens/s, ETA."""

    def __init__(self, total: int, already_done: int, enabled: bool = True, label: str = "eval",
                 is_pass=lambda row: row["status"] == "pass"):
        self.total, self.done, self.passed, self.is_pass = total, already_done, 0, is_pass
        self.checked_now, self.tokens, self.start = 0, 0, time.monotonic()
        self.lock = threading.Lock()
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("pass {task.fields[rate]}"), TextColumn("{task.fields[tps]} tok/s"),
                                     TextColumn("ETA"), TimeRemainingColumn())
            self.bar = self.progress.add_task("eval", total=total, completed=already_done, rate="-", tps="-")

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def generated(self, tokens: int) -> None:
        with self.lock:
            self.tokens += tokens

    def checked(self, row: dict) -> None:
        with self.lock:
            self.done += 1
            self.checked_now += 1
            self.passed += bool(self.is_pass(row))
            self.checked_now -= is_error(row)  # the live pass rate is over scored samples
            if self.progress:
                rate = f"{self.passed / self.checked_now:.1%}" if self.checked_now else "-"
                tps = f"{self.tokens / max(time.monotonic() - self.start, 1e-9):.1f}"
                self.progress.update(self.bar, completed=self.done, rate=rate, tps=tps)


def summarize(bench: str, tasks: list[Task], rows: dict[tuple[str, int], dict], n: int, dataset: Dataset,
              settings: dict) -> dict:
    task_rows = {t.task_id: [rows[(t.task_id, i)] for i in range(n) if (t.task_id, i) in rows] for t in tasks}
    metrics = ("base", "plus") if bench != "humaneval" else ("base",)
    per_task = {}
    for task_id, samples in task_rows.items():
        scored = [r for r in samples if not is_error(r)]
        per_task[task_id] = {"n": len(scored), "errors": len(samples) - len(scored)} | {
            m: sum(bool(r[m]) for r in scored) for m in metrics}
    results = {}
    for metric in metrics:
        counts = [(v["n"], v[metric]) for v in per_task.values() if v["n"]]
        results[metric] = {f"pass@{k}": mean_pass_at_k(counts, k) for k in reportable_ks(n)}
    all_rows = [r for samples in task_rows.values() for r in samples]
    tokens = sum(r["completion_tokens"] for r in all_rows)
    errors = sum(map(is_error, all_rows))
    return {
        "benchmark": bench, "dataset": {"path": str(dataset.path), "sha256": dataset.sha256},
        "settings": settings, "tasks": len(tasks), "samples_per_task": n, "samples": len(all_rows),
        "results": results, "scored": len(all_rows) - errors, "errors": errors,
        "problems": run_problems(all_rows, tokens),
        "statuses": {s: sum(r["status"] == s for r in all_rows) for s in STATUS_ORDER},
        "completion_tokens": tokens,
        "per_task": per_task,
    }


def write_all(summary: dict, output: Path) -> None:
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, output / "pass_at_k.png")
    print_table(summary)


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['benchmark']}: {summary['tasks']} tasks x {summary['samples_per_task']} samples")
    table.add_column("metric")
    ks = list(next(iter(summary["results"].values())))
    for k in ks:
        table.add_column(k, justify="right")
    table.add_column("scored", justify="right")
    table.add_column("errors", justify="right")
    for metric, values in summary["results"].items():
        table.add_row(_metric_name(summary["benchmark"], metric),
                      *[f"{values[k]:.1%}" if values[k] is not None else "-" for k in ks],
                      str(summary["scored"]), errors_cell(summary["errors"]))
    console = Console()
    console.print(table)
    statuses = ", ".join(f"{s} {c}" for s, c in summary["statuses"].items() if c)
    console.print(f"samples: {summary['samples']} ({statuses}); completion tokens: {summary['completion_tokens']}")
    print_sandbox_and_problems(console, summary)


def print_sandbox_and_problems(console, summary: dict) -> None:
    for note in summary.get("sandbox", {}).get("notes", []):
        console.print(f"[yellow]sandbox: {note}[/yellow]")
    for problem in summary["problems"]:
        console.print(f"[bold red]error: {problem}[/bold red]")


def errors_cell(count: int) -> str:
    return f"[bold red]{count}[/bold red]" if count else "0"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_task = summary["per_task"]
    multi = summary["samples_per_task"] > 1
    fig, axes = plt.subplots(1, 2 if multi else 1, figsize=(12 if multi else 6, 4), squeeze=False)
    ax = axes[0][0]
    labels, values = [], []
    for metric, results in summary["results"].items():
        for k, value in results.items():
            labels.append(f"{_metric_name(summary['benchmark'], metric)}\n{k}")
            values.append(100 * (value or 0.0))
    bars = ax.bar(labels, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title(f"{summary['benchmark']} ({summary['settings'].get('model', '')})")
    if multi:
        metric = list(summary["results"])[-1]
        rates = sorted((v[metric] / v["n"] for v in per_task.values() if v["n"]), reverse=True)
        axes[0][1].bar(range(len(rates)), [100 * r for r in rates], width=1.0, color="tab:green")
        axes[0][1].set_title(f"per-task pass rate ({_metric_name(summary['benchmark'], metric)}), sorted")
        axes[0][1].set_xlabel("task")
        axes[0][1].set_ylim(0, 105)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_polyglot(summary: dict, path: Path) -> None:
    """pass_rate_1 and pass_rate_2 per language and overall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [*summary["languages"].items(), ("all", summary)]
    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(groups)), 4))
    for offset, key in ((-0.2, "pass_rate_1"), (0.2, "pass_rate_2")):
        bars = ax.bar([i + offset for i in range(len(groups))], [100 * (g[key] or 0) for _, g in groups], width=0.4,
                      label=key)
        ax.bar_label(bars, fmt="%.0f")
    ax.set_xticks(range(len(groups)), [name for name, _ in groups])
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title(f"polyglot ({summary['settings'].get('model') or ''})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _metric_name(bench: str, metric: str) -> str:
    base = bench.rstrip("+")
    return {"base": base, "plus": f"{base}+"}[metric]
