from retry import backoff_delays, total_wait


def test_default_schedule_doubles():
    assert backoff_delays() == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_default_total():
    assert total_wait() == 15.5


def test_explicit_arguments_still_work():
    assert backoff_delays(3, base=1.0, factor=3.0) == [1.0, 3.0, 9.0]


def test_cap():
    assert backoff_delays(8, base=1.0, factor=2.0, cap=10.0)[-1] == 10.0


def test_no_retries():
    assert backoff_delays(0) == []
