"""Word counting used by the wordfreq command."""

import re
from collections import Counter

WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD_RE.findall(text)]


def count_words(text: str) -> Counter:
    return Counter(words(text))


def top_words(counts: Counter, n: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]


def merge(*counters: Counter) -> Counter:
    total = Counter()
    for counter in counters:
        total.update(counter)
    return total
