"""Dates covered by a booking, and its price."""

from datetime import date, timedelta


def date_range(start: date, end: date) -> list[date]:
    """Every date from start to end, both included."""
    if end < start:
        raise ValueError("end is before start")
    return [start + timedelta(days=i) for i in range((end - start).days)]


def price(start: date, end: date, nightly: int, weekend_extra: int = 0) -> int:
    total = 0
    for day in date_range(start, end):
        total += nightly + (weekend_extra if day.weekday() >= 5 else 0)
    return total
