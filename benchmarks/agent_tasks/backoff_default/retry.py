"""Retry schedules for the HTTP client."""


def backoff_delays(retries: int = 5, base: float = 0.5, factor: float = 3.0, cap: float = 30.0) -> list[float]:
    """The wait before each retry: base, base*factor, base*factor**2, ... never more than `cap`."""
    if retries < 0:
        raise ValueError("retries must be >= 0")
    return [min(cap, base * factor ** i) for i in range(retries)]


def total_wait(retries: int = 5, **kwargs) -> float:
    """Seconds spent waiting if every retry fails."""
    return sum(backoff_delays(retries, **kwargs))
