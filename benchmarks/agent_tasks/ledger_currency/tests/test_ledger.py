import pytest

from ledger import Ledger
from money import CurrencyMismatch, Money


def test_money_has_a_currency():
    assert Money(150).currency == "EUR"
    assert Money(150, "USD").currency == "USD"


def test_same_currency_adds():
    assert Money(100, "USD") + Money(50, "USD") == Money(150, "USD")


def test_different_currencies_do_not_add():
    with pytest.raises(CurrencyMismatch):
        Money(100, "EUR") + Money(50, "USD")


def test_balance_in_ledger_currency():
    ledger = Ledger("USD")
    ledger.add("coffee", Money(-350, "USD"))
    ledger.add("salary", Money(100000, "USD"))
    assert ledger.balance() == Money(99650, "USD")


def test_empty_ledger_balance():
    assert Ledger("GBP").balance() == Money(0, "GBP")


def test_foreign_entry_rejected():
    ledger = Ledger("EUR")
    with pytest.raises(CurrencyMismatch):
        ledger.add("hotel", Money(1000, "USD"))
    assert ledger.entries == []
