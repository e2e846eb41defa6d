import pytest

from roman import from_roman, to_roman


@pytest.mark.parametrize("number,text", [(1, "I"), (4, "IV"), (9, "IX"), (14, "XIV"), (40, "XL"), (90, "XC"),
                                         (400, "CD"), (900, "CM"), (1994, "MCMXCIV"), (3999, "MMMCMXCIX"),
                                         (2024, "MMXXIV")])
def test_to_roman(number, text):
    assert to_roman(number) == text


def test_round_trip():
    for number in range(1, 4000):
        assert from_roman(to_roman(number)) == number


def test_range():
    with pytest.raises(ValueError):
        to_roman(0)
