import pytest

from durations import format_duration, parse_duration


def test_parse():
    assert parse_duration("1h30m") == 5400


@pytest.mark.parametrize("seconds,text", [(5400, "1h30m"), (45, "45s"), (3600, "1h"), (0, "0s"), (3661, "1h1m1s"),
                                          (120, "2m")])
def test_format(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 61, 7322, 86400])
def test_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_negative():
    with pytest.raises(ValueError):
        format_duration(-5)
