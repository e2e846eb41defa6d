"""Keep a sorted list of prices without re-sorting it on every insert."""


def insertion_point(values: list[float], x: float) -> int:
    """The first index whose value is >= x (len(values) when there is none)."""
    lo, hi = 0, len(values) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def insert_sorted(values: list[float], x: float) -> None:
    values.insert(insertion_point(values, x), x)


def count_below(values: list[float], x: float) -> int:
    return insertion_point(values, x)
