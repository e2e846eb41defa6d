"""Every task of the shipped agent benchmark is sound: its tests fail as shipped, and pass after its
reference.patch, which leaves the tests alone (benchmarks/agent_tasks, `qcoder eval agent --check`)."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qcoder.eval.agent_tasks import DEFAULT_PROTECTED, check_task, load_dir

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "agent_tasks"


def test_the_suite_is_sound(tmp_path):
    tasks = load_dir(SUITE)
    assert len(tasks) >= 24
    for task in tasks:
        assert task.protected == DEFAULT_PROTECTED
        assert 1 <= len([p for p in task.source.glob("*.py")]) <= 4, task.name
        assert list((task.source / "tests").glob("test_*.py")), task.name
    with ThreadPoolExecutor(4) as pool:  # each check is a few subprocesses: threads keep both cores busy
        problems = [p for found in pool.map(lambda t: check_task(t, tmp_path), tasks) for p in found]
    assert problems == []


def test_check_catches_a_reference_patch_that_edits_the_tests(tmp_path):
    folder = tmp_path / "cheat"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_x.py").write_text("def test_x():\n    assert False\n")
    (folder / "task.toml").write_text('task = "make it pass"\ntest_command = "python -m pytest -q -p no:cacheprovider"\n')
    (folder / "reference.patch").write_text(
        "--- a/tests/test_x.py\n+++ b/tests/test_x.py\n@@ -1,2 +1,2 @@\n def test_x():\n-    assert False\n"
        "+    assert True\n")
    (task,) = load_dir(tmp_path)
    problems = check_task(task, tmp_path / "scratch")
    assert len(problems) == 1 and "changes protected files: tests/test_x.py" in problems[0]


@pytest.mark.parametrize("toml,message", [
    ('test_command = "pytest"\n', "`task` must be a non-empty string"),
    ('task = "x"\ntest_command = "pytest"\ntimeout = -1\n', "`timeout` must be a positive number"),
    ('task = "x\n', "not valid TOML"),
])
def test_bad_task_files(tmp_path, toml, message):
    from qcoder.errors import QcoderError

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "task.toml").write_text(toml)
    with pytest.raises(QcoderError, match=message):
        load_dir(tmp_path)
