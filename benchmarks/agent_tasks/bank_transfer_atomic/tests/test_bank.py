import pytest

from accounts import Account, InsufficientFunds
from bank import Bank


def test_transfer():
    bank, a, b = Bank(), Account("ann", 100), Account("bob", 5)
    bank.transfer(a, b, 30)
    assert (a.balance, b.balance) == (70, 35)
    assert bank.history == [("ann", "bob", 30)]


def test_failed_transfer_changes_nothing():
    bank, a, b = Bank(), Account("ann", 10), Account("bob", 5)
    with pytest.raises(InsufficientFunds):
        bank.transfer(a, b, 30)
    assert (a.balance, b.balance) == (10, 5)
    assert bank.history == []


@pytest.mark.parametrize("amount", [0, -5])
def test_bad_amount(amount):
    bank, a, b = Bank(), Account("ann", 10), Account("bob", 5)
    with pytest.raises(ValueError):
        bank.transfer(a, b, amount)
    assert (a.balance, b.balance) == (10, 5)
    assert bank.history == []
