import pytest

from smoothing import moving_average, smooth_series


def test_counts():
    assert moving_average([1, 2, 3, 4, 5], 3) == [2.0, 3.0, 4.0]


def test_window_equals_length():
    assert moving_average([2, 4], 2) == [3.0]


def test_window_one_is_identity():
    assert moving_average([1.5, 2.5], 1) == [1.5, 2.5]


def test_window_too_large():
    assert moving_average([1, 2], 3) == []


def test_bad_window():
    with pytest.raises(ValueError):
        moving_average([1], 0)


def test_series():
    assert smooth_series({"t": [10, 20, 30]}, 2) == {"t": [15.0, 25.0]}
