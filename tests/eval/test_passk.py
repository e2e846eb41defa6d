from math import comb

import pytest

from qcoder.eval.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("n,c,k,expected", [
    (1, 1, 1, 1.0), (1, 0, 1, 0.0), (10, 3, 1, 0.3), (5, 2, 2, 1 - 3 / 10), (10, 9, 2, 1.0), (10, 0, 10, 0.0),
    (4, 1, 3, 0.75),
])
def test_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize("n,c,k", [(20, 5, 1), (20, 5, 10), (200, 13, 100), (50, 49, 10)])
def test_matches_binomial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_mean_and_bad_arguments():
    assert mean_pass_at_k([(10, 3), (10, 0)], 1) == pytest.approx(0.15)
    assert mean_pass_at_k([(1, 1)], 10) is None
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
