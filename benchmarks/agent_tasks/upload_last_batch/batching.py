"""Helpers for splitting work into fixed-size batches."""

from typing import List, Sequence, TypeVar

T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> List[List[T]]:
    if size <= 0:
        raise ValueError("size must be positive")
    chunks = []
    for start in range(0, len(items) - size + 1, size):
        chunks.append(list(items[start:start + size]))
    return chunks


def count_batches(total: int, size: int) -> int:
    if size <= 0:
        raise ValueError("size must be positive")
    return (total + size - 1) // size
