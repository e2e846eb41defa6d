import bisect
import random

from sorted_prices import count_below, insert_sorted, insertion_point


def test_middle_and_ends():
    values = [1.0, 2.5, 2.5, 4.0]
    assert insertion_point(values, 2.5) == 1
    assert insertion_point(values, 0.5) == 0
    assert insertion_point(values, 9.0) == 4


def test_empty():
    assert insertion_point([], 3.0) == 0


def test_matches_bisect_left():
    rng = random.Random(7)
    for _ in range(200):
        values = sorted(rng.randint(0, 20) for _ in range(rng.randint(0, 12)))
        x = rng.randint(-2, 22)
        assert insertion_point(values, x) == bisect.bisect_left(values, x)


def test_insert_sorted_keeps_order():
    values = [1.0, 3.0]
    for x in (5.0, 0.0, 2.0):
        insert_sorted(values, x)
    assert values == [0.0, 1.0, 2.0, 3.0, 5.0]
    assert count_below(values, 2.5) == 3
