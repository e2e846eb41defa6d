"""Lines for the weather report."""

from units import convert

SYMBOLS = {"C": "°C", "F": "°F"}


def format_reading(value_c: float, unit: str = "C") -> str:
    if unit not in SYMBOLS:
        raise ValueError(f"unknown unit {unit!r}")
    return f"{convert(value_c, 'C', unit):.2f} {SYMBOLS[unit]}"


def report(readings: dict[str, float], unit: str = "C") -> list[str]:
    return [f"{city}: {format_reading(value, unit)}" for city, value in sorted(readings.items())]
