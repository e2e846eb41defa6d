"""Dataset loading: the bundled and shared copies, --dataset, task selection, clear errors."""

import gzip
import json

import pytest

from qcoder.errors import QcoderError
from qcoder.eval import datasets
from tests.conftest import needs_shared_data


@needs_shared_data
def test_bundled_and_shared_releases():
    humaneval = datasets.load("humaneval")
    assert len(humaneval.tasks) == 164 and humaneval.path.name == "HumanEval.jsonl.gz"
    mbpp = datasets.load("mbpp+")
    assert mbpp.sha256 == datasets.RELEASES["mbpp+"].sha256 and len(mbpp.tasks) == 378
    task = mbpp.tasks[0]
    assert task.family == "mbpp" and task.base_input and task.plus_input and task.entry_point in task.canonical_solution


def test_user_copy_and_selection(tmp_path):
    rows = [{"task_id": f"Mine/{i}", "prompt": "", "entry_point": "f", "canonical_solution": "def f(x):\n    return x",
             "base_input": [[1]], "plus_input": [[2]], "atol": 0} for i in range(3)]
    path = tmp_path / "mine.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(map(json.dumps, rows)))
    dataset = datasets.load("mbpp+", str(path))
    assert [t.task_id for t in datasets.select(dataset.tasks, limit=2)] == ["Mine/0", "Mine/1"]
    assert [t.task_id for t in datasets.select(dataset.tasks, ["Mine/2"])] == ["Mine/2"]
    with pytest.raises(QcoderError, match="unknown task id"):
        datasets.select(dataset.tasks, ["Mine/9"])


def test_not_an_evalplus_file(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"task_id": "x", "prompt": "p"}) + "\n")
    with pytest.raises(QcoderError, match="not an evalplus"):
        datasets.load("humaneval+", str(path))


def test_shared_data_missing_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "__file__", str(tmp_path / "site-packages" / "qcoder" / "eval" / "datasets.py"))
    with pytest.raises(QcoderError, match=r"MbppPlus-v0.2.0.jsonl.gz not found in shared/data.*--dataset PATH"):
        datasets.load("mbpp+")
