import pytest

from calendar_utils import days_in_month, days_in_year, is_leap


@pytest.mark.parametrize("year,leap", [(2024, True), (2023, False), (1900, False), (2000, True), (2100, False),
                                       (1996, True)])
def test_is_leap(year, leap):
    assert is_leap(year) is leap


def test_february():
    assert days_in_month(2024, 2) == 29
    assert days_in_month(2023, 2) == 28


def test_year_lengths():
    assert days_in_year(2000) == 366
    assert days_in_year(1900) == 365


def test_bad_month():
    with pytest.raises(ValueError):
        days_in_month(2024, 13)
