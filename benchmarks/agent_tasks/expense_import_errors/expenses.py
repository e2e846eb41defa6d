"""Import expense rows exported from the bank as CSV."""

import csv
import io
from dataclasses import dataclass
from decimal import Decimal


@dataclass
class Expense:
    date: str
    category: str
    amount: Decimal


def parse_amount(text: str) -> Decimal:
    cleaned = text.strip().replace(",", "")
    if cleaned.startswith("$"):
        cleaned = cleaned[1:]
    try:
        return Decimal(cleaned)
    except ValueError:
        raise ValueError(f"invalid amount {text!r}")


def load_expenses(text: str) -> list[Expense]:
    reader = csv.DictReader(io.StringIO(text))
    expenses = []
    for line_no, row in enumerate(reader, start=2):
        try:
            amount = parse_amount(row["amount"])
        except ValueError as exc:
            raise ValueError(f"line {line_no}: {exc}") from None
        category = row["category"].strip().lower() or "uncategorized"
        expenses.append(Expense(row["date"].strip(), category, amount))
    return expenses


def totals_by_category(expenses: list[Expense]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for expense in expenses:
        totals[expense.category] = totals.get(expense.category, Decimal("0")) + expense.amount
    return dict(sorted(totals.items()))
