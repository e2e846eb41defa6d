from decimal import Decimal

import pytest

from models import Invoice, LineItem
from render import format_line, render, totals


def test_plain_line():
    assert format_line(LineItem("Widget", 2, "10")) == "  2 x Widget @ 10.00 = 20.00"


def test_totals_without_discount():
    inv = Invoice("A-1", "Acme").add(LineItem("Widget", 2, "10")).add(LineItem("Bolt", 3, "0.35"))
    assert totals(inv) == (Decimal("21.05"), Decimal("4.21"), Decimal("25.26"))


def test_quantity_validation():
    with pytest.raises(ValueError):
        LineItem("Widget", 0, "10")


def test_discounted_subtotal():
    item = LineItem("Widget", 2, "10", discount_pct=15)
    assert item.subtotal == Decimal("17.00")
    assert LineItem("Gadget", 1, "9.99", discount_pct=Decimal("12.5")).subtotal == Decimal("8.74")


def test_discounted_line_format():
    assert format_line(LineItem("Widget", 2, "10", discount_pct=15)) == "  2 x Widget @ 10.00 (-15%) = 17.00"
    assert format_line(LineItem("Gadget", 1, "9.99", discount_pct=Decimal("12.5"))) == (
        "  1 x Gadget @ 9.99 (-12.5%) = 8.74"
    )


def test_discount_in_rendered_total():
    inv = Invoice("A-2", "Acme").add(LineItem("Widget", 2, "10", discount_pct=15))
    assert render(inv).splitlines()[-1] == "Total: 20.40"


def test_discount_range():
    with pytest.raises(ValueError):
        LineItem("Widget", 1, "10", discount_pct=120)
    with pytest.raises(ValueError):
        LineItem("Widget", 1, "10", discount_pct=-5)
