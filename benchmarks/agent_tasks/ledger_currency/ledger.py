"""A list of entries and their balance."""

from money import Money


class Ledger:
    def __init__(self, currency: str = "EUR"):
        self.currency = currency
        self.entries: list[tuple[str, Money]] = []

    def add(self, description: str, amount: Money) -> None:
        self.entries.append((description, amount))

    def balance(self) -> Money:
        total = Money(0)
        for _, amount in self.entries:
            total = total + amount
        return total
