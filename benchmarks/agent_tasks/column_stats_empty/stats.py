"""Column statistics for the sales report."""


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values)


def median(values: list[float]) -> float | None:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
