from datetime import date

import pytest

from booking import date_range, price


def test_both_ends_included():
    assert date_range(date(2024, 3, 1), date(2024, 3, 3)) == [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)]


def test_single_day():
    assert date_range(date(2024, 3, 1), date(2024, 3, 1)) == [date(2024, 3, 1)]


def test_across_month_end():
    assert len(date_range(date(2024, 2, 27), date(2024, 3, 2))) == 5


def test_price_with_weekend():
    # Fri 2024-03-01 .. Sun 2024-03-03: Sat and Sun cost extra
    assert price(date(2024, 3, 1), date(2024, 3, 3), 100, weekend_extra=20) == 340


def test_backwards():
    with pytest.raises(ValueError):
        date_range(date(2024, 3, 2), date(2024, 3, 1))
