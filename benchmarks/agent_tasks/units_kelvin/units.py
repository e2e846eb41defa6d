"""Temperature conversions. Units: "C", "F"."""


def to_celsius(value: float, unit: str) -> float:
    if unit == "C":
        return value
    if unit == "F":
        return (value - 32) * 5 / 9
    raise ValueError(f"unknown unit {unit!r}")


def from_celsius(value: float, unit: str) -> float:
    if unit == "C":
        return value
    if unit == "F":
        return value * 9 / 5 + 32
    raise ValueError(f"unknown unit {unit!r}")


def convert(value: float, source: str, target: str) -> float:
    return from_celsius(to_celsius(value, source), target)
