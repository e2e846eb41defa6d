import json
from datetime import datetime

from orders import LineItem, Order


def sample() -> Order:
    return Order("A-17", datetime(2024, 5, 1, 12, 30), [LineItem("pen", 3, 150), LineItem("pad", 1, 499)], "gift")


def test_to_dict_is_json():
    json.dumps(sample().to_dict())


def test_round_trip():
    order = sample()
    assert Order.from_dict(json.loads(json.dumps(order.to_dict()))) == order


def test_loaded_order_works():
    loaded = Order.from_dict(sample().to_dict())
    assert loaded.total_cents == 949
    assert loaded.created.year == 2024


def test_defaults():
    loaded = Order.from_dict({"order_id": "B-1", "created": "2024-01-02T03:04:05"})
    assert loaded.items == [] and loaded.note == ""
