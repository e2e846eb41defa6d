"""Small date helpers for the booking calendar."""

DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def is_leap(year: int) -> bool:
    """Gregorian rule: every 4th year, except centuries, except every 400th year."""
    return year % 4 == 0 and (year % 100 != 0 and year % 400 == 0)


def days_in_month(year: int, month: int) -> int:
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    if month == 2 and is_leap(year):
        return 29
    return DAYS_IN_MONTH[month - 1]


def days_in_year(year: int) -> int:
    return sum(days_in_month(year, m) for m in range(1, 13))
