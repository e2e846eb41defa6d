from report import report
from stats import mean, median


def test_mean_and_median():
    assert mean([1, 2, 3, 4]) == 2.5
    assert median([5, 1, 3]) == 3
    assert median([4, 1, 3, 2]) == 2.5


def test_empty_column():
    assert mean([]) is None
    assert median([]) is None


def test_report_with_empty_region():
    text = report({"north": [10.0, 20.0], "south": []})
    assert text.splitlines() == ["north: 2 sales, mean 15.00, median 15.00", "south: 0 sales, mean n/a, median n/a"]
