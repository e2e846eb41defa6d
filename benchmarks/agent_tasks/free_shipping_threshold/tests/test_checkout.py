from checkout import shipping_for, total


def test_exactly_threshold_ships_free():
    assert shipping_for(5000) == 0
    assert total([(2500, 2)]) == 5000


def test_below_threshold_pays_shipping():
    assert total([(4999, 1)]) == 4999 + 490


def test_discount_applies_before_threshold():
    assert total([(5500, 1)], discount_percent=10) == 4950 + 490


def test_discount_still_above():
    assert total([(6000, 1)], discount_percent=10) == 5400
