"""Wrap plain text for the terminal."""


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap: lines of at most `width` characters, words kept whole."""
    if width < 1:
        raise ValueError("width must be positive")
    lines, current = [], ""
    for word in text.split():
        if len(word) > width:
            continue
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current += " " + word
        else:
            lines.append(current)
            current = word
    lines.append(current)
    return lines


def indent(lines: list[str], prefix: str = "  ") -> list[str]:
    return [prefix + line for line in lines]
