import pytest

from wrap import indent, wrap


def test_simple():
    assert wrap("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]


def test_long_word_kept_on_its_own_line():
    url = "https://example.com/a/very/long/path"
    assert wrap(f"see {url} now", 10) == ["see", url, "now"]


def test_long_word_first():
    assert wrap("abcdefghijkl xy", 5) == ["abcdefghijkl", "xy"]


def test_empty():
    assert wrap("", 10) == []
    assert wrap("   ", 10) == []


def test_width():
    with pytest.raises(ValueError):
        wrap("a", 0)


def test_indent():
    assert indent(["a", "b"]) == ["  a", "  b"]
