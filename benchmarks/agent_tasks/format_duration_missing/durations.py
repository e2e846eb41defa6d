"""Human-friendly durations like "2h", "1h30m" or "90s"."""

import re

UNITS = {"h": 3600, "m": 60, "s": 1}
PART = re.compile(r"(\d+)([hms])")


def parse_duration(text: str) -> int:
    """'1h30m' -> 5400 seconds."""
    text = text.strip().lower()
    parts = PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * UNITS[u] for n, u in parts)
