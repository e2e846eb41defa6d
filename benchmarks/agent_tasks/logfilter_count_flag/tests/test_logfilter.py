import pytest

from logfilter import main

LOG = """10:00 INFO started
10:01 DEBUG cache warm
10:02 ERROR disk full
10:03 WARNING slow request
10:04 ERROR disk full again
"""


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "app.log"
    path.write_text(LOG)
    return str(path)


def test_lines(log, capsys):
    assert main(["--level", "WARNING", log]) == 0
    assert capsys.readouterr().out.splitlines() == ["10:02 ERROR disk full", "10:03 WARNING slow request",
                                                    "10:04 ERROR disk full again"]


def test_count(log, capsys):
    assert main(["--level", "ERROR", "--count", log]) == 0
    assert capsys.readouterr().out.strip() == "2"


def test_count_default_level(log, capsys):
    assert main([log, "--count"]) == 0
    assert capsys.readouterr().out.strip() == "4"
