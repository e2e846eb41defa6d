import pytest

from inventory import Inventory, OutOfStock


def test_add_and_remove():
    inv = Inventory()
    inv.add("widget", 3)
    inv.remove("widget", 2)
    assert inv.available("widget") == 1


def test_remove_everything():
    inv = Inventory()
    inv.add("widget", 3)
    inv.remove("widget", 3)
    assert inv.available("widget") == 0


def test_oversell():
    inv = Inventory()
    inv.add("widget", 3)
    with pytest.raises(OutOfStock) as info:
        inv.remove("widget", 5)
    assert (info.value.wanted, info.value.available) == (5, 3)
    assert inv.available("widget") == 3


def test_unknown_item():
    with pytest.raises(OutOfStock):
        Inventory().remove("gadget", 1)
