"""One line per region: count, mean and median of the sale amounts."""

from stats import mean, median


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def region_line(region: str, amounts: list[float]) -> str:
    return f"{region}: {len(amounts)} sales, mean {fmt(mean(amounts))}, median {fmt(median(amounts))}"


def report(sales: dict[str, list[float]]) -> str:
    return "\n".join(region_line(region, amounts) for region, amounts in sorted(sales.items()))
