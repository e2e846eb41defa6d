import pytest

from address import parse_address


def test_host_and_port():
    assert parse_address("localhost:9000") == ("localhost", 9000)


def test_default_port():
    assert parse_address("example.org") == ("example.org", 8080)


def test_empty_host():
    assert parse_address(":81") == ("0.0.0.0", 81)


@pytest.mark.parametrize("value", ["host:abc", "host:70000", "host:0", "host:-5", "host:"])
def test_bad_port(value):
    with pytest.raises(ValueError) as info:
        parse_address(value)
    assert "port" in str(info.value).lower()
