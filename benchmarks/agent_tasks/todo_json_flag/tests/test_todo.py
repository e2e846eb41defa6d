import json

import pytest

from todo import main


@pytest.fixture
def todo_file(tmp_path):
    path = str(tmp_path / "todos.json")
    main(["--file", path, "add", "buy milk"])
    main(["--file", path, "add", "call mum"])
    main(["--file", path, "done", "1"])
    return path


def test_text_listing_unchanged(todo_file, capsys):
    capsys.readouterr()
    main(["--file", todo_file, "list"])
    assert capsys.readouterr().out == "[ ] #2 call mum\n"


def test_json_listing(todo_file, capsys):
    capsys.readouterr()
    assert main(["--file", todo_file, "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"id": 2, "title": "call mum", "done": False}]


def test_json_with_all(todo_file, capsys):
    capsys.readouterr()
    main(["--file", todo_file, "list", "--all", "--json"])
    assert [t["id"] for t in json.loads(capsys.readouterr().out)] == [1, 2]
