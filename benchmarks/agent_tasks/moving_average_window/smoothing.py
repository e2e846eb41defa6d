"""Smoothing for the sensor dashboard."""


def moving_average(values: list[float], window: int) -> list[float]:
    """The mean of each run of `window` consecutive values."""
    if window < 1:
        raise ValueError("window must be at least 1")
    return [sum(values[i:i + window]) / window for i in range(len(values) - window)]


def smooth_series(series: dict[str, list[float]], window: int) -> dict[str, list[float]]:
    return {name: moving_average(values, window) for name, values in series.items()}
