import pytest

from signup import SignupError, signup
from validators import validate_password, validate_username


def test_good_password():
    assert validate_password("blue42horse") == []


def test_too_short():
    assert validate_password("ab1") == ["password must be at least 8 characters"]


def test_letters_only_rejected():
    assert validate_password("sunshinesunshine") == ["password must contain both letters and digits"]


def test_digits_only_rejected():
    assert validate_password("1234567890") == ["password must contain both letters and digits"]


def test_contains_username():
    assert validate_password("alice2024x", "alice") == ["password must not contain the username"]


def test_username_rules():
    assert validate_username("bob_99") == []
    assert validate_username("Bob") != []


def test_signup_rejects_weak_password():
    users = {}
    with pytest.raises(SignupError) as info:
        signup(users, "carol", "passwordpassword")
    assert "password must contain both letters and digits" in info.value.errors
    assert users == {}
    signup(users, "carol", "pass2word9")
    assert "carol" in users
