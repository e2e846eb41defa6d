"""Basket totals at checkout, in cents."""

FREE_SHIPPING_FROM = 5000
SHIPPING = 490


def subtotal(items: list[tuple[int, int]]) -> int:
    """Sum of price * quantity."""
    return sum(price * quantity for price, quantity in items)


def discounted(amount: int, percent: int) -> int:
    return amount - amount * percent // 100


def shipping_for(goods: int) -> int:
    return 0 if goods > FREE_SHIPPING_FROM else SHIPPING


def total(items: list[tuple[int, int]], discount_percent: int = 0) -> int:
    goods = subtotal(items)
    shipping = shipping_for(goods)
    return discounted(goods, discount_percent) + shipping
