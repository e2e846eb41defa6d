"""Split a list of search results into pages numbered from 1."""

import math


def page_count(total: int, per_page: int) -> int:
    """How many pages `total` results need (at least one, so an empty result still has a page)."""
    if per_page <= 0:
        raise ValueError("per_page must be positive")
    return max(1, math.ceil(total / per_page))


def page(items: list, number: int, per_page: int = 10) -> list:
    """The items on page `number` (1-based)."""
    if number < 1 or number > page_count(len(items), per_page):
        raise IndexError(f"no page {number}")
    start = number * per_page
    return items[start:start + per_page]


def page_label(number: int, total: int, per_page: int = 10) -> str:
    """'Page 2 of 5' for the footer."""
    return f"Page {number} of {page_count(total, per_page)}"
