import pytest

from report import format_reading, report
from units import convert


def test_existing_units():
    assert convert(100, "C", "F") == 212
    assert convert(32, "F", "C") == 0


def test_kelvin():
    assert convert(0, "C", "K") == pytest.approx(273.15)
    assert convert(300, "K", "C") == pytest.approx(26.85)
    assert convert(212, "F", "K") == pytest.approx(373.15)


def test_kelvin_report():
    assert format_reading(20, "K") == "293.15 K"
    assert report({"Oslo": -5.0}, "K") == ["Oslo: 268.15 K"]
    assert format_reading(20) == "20.00 °C"


def test_unknown_unit():
    with pytest.raises(ValueError):
        convert(1, "C", "R")
    with pytest.raises(ValueError):
        format_reading(1, "R")
