"""The unbiased pass@k estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k).

Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
"""

from __future__ import annotations


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def mean_pass_at_k(counts: list[tuple[int, int]], k: int) -> float | None:
    """Average over tasks given (n, c) per task; None when some task has fewer than k samples."""
    if not counts or any(n < k for n, _ in counts):
        return None
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def reportable_ks(n: int) -> list[int]:
    return [k for k in (1, 10, 100) if k <= n]
