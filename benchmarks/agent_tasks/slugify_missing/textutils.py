"""Small text helpers shared by the blog engine."""

import html
import re

TAG_RE = re.compile(r"<[^>]+>")


def strip_tags(markup: str) -> str:
    return html.unescape(TAG_RE.sub("", markup))


def truncate(text: str, limit: int, suffix: str = "...") -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - len(suffix)].rsplit(" ", 1)[0]
    return cut + suffix


def word_count(markup: str) -> int:
    return len(strip_tags(markup).split())
