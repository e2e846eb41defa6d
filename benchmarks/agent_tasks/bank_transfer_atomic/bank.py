"""Moving money between accounts."""

from accounts import Account


class Bank:
    def __init__(self):
        self.history: list[tuple[str, str, int]] = []

    def transfer(self, source: Account, target: Account, amount: int) -> None:
        target.deposit(amount)
        source.withdraw(amount)
