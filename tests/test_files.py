import os

import pytest

from qcoder.files import keep_newest, write_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    write_atomic(target, "old")

    with pytest.raises(TypeError):
        write_atomic(target, 42)  # not text: the write fails half way
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_keep_newest_prunes_the_oldest_entries_with_their_companions(tmp_path):
    for age, name in enumerate(["c", "b", "a"]):  # a is the oldest
        entry = tmp_path / f"{name}.tok.json"
        entry.write_text(name)
        (tmp_path / f"{name}.fields").write_text(name)
        os.utime(entry, (1000 - age, 1000 - age))
    (tmp_path / "other.txt").write_text("not an entry")

    keep_newest(tmp_path, "*.tok.json", 2, lambda entry: [entry.with_name(entry.name.split(".")[0] + ".fields")])

    assert sorted(os.listdir(tmp_path)) == ["b.fields", "b.tok.json", "c.fields", "c.tok.json", "other.txt"]
