from decimal import Decimal

import pytest

from expenses import load_expenses, parse_amount, totals_by_category

GOOD = """date,category,amount
2024-03-01,Groceries,42.10
2024-03-02,rent,"$1,200.00"
2024-03-05, groceries ,7.90
"""


def test_load_good_file():
    rows = load_expenses(GOOD)
    assert [r.category for r in rows] == ["groceries", "rent", "groceries"]
    assert rows[1].amount == Decimal("1200.00")


def test_totals():
    assert totals_by_category(load_expenses(GOOD)) == {
        "groceries": Decimal("50.00"),
        "rent": Decimal("1200.00"),
    }


def test_parse_amount_formats():
    assert parse_amount(" $3,450.5 ") == Decimal("3450.5")
    assert parse_amount("-12") == Decimal("-12")


def test_bad_amount_reports_line():
    text = "date,category,amount\n2024-03-01,food,12.00\n2024-03-02,food,abc\n"
    with pytest.raises(ValueError, match=r"^line 3: invalid amount 'abc'$"):
        load_expenses(text)


def test_empty_amount_reports_line():
    text = "date,category,amount\n2024-03-01,food,\n"
    with pytest.raises(ValueError, match=r"^line 2: invalid amount ''$"):
        load_expenses(text)


def test_parse_amount_error_is_value_error():
    with pytest.raises(ValueError, match="invalid amount '12,5 EUR'"):
        parse_amount("12,5 EUR")
