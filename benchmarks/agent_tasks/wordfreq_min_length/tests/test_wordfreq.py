import pytest

from wordfreq import main

TEXT = "The cat and the dog. The cat sat on a mat; a dog barked at the cat!"


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_default_output(sample, capsys):
    assert main([sample, "--top", "3"]) == 0
    assert lines(capsys) == ["     4 the", "     3 cat", "     2 a"]


def test_missing_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.txt")]) == 1
    assert "nope.txt" in capsys.readouterr().err


def test_min_length(sample, capsys):
    assert main([sample, "--min-length", "4", "--top", "5"]) == 0
    assert lines(capsys) == ["     1 barked"]


def test_min_length_three(sample, capsys):
    assert main(["--min-length", "3", sample, "--top", "4"]) == 0
    assert lines(capsys) == ["     4 the", "     3 cat", "     2 dog", "     1 and"]


def test_min_length_multiple_files(sample, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("Barking dogs; barked, barked.", encoding="utf-8")
    assert main([sample, str(other), "--min-length", "5"]) == 0
    assert lines(capsys) == ["     3 barked", "     1 barking"]
