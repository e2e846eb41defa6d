"""Orders and their JSON-friendly dict form (stored in the orders table as JSON)."""

from dataclasses import asdict, dataclass, field
from datetime import datetime


@dataclass
class LineItem:
    sku: str
    quantity: int
    unit_price_cents: int

    @property
    def total_cents(self) -> int:
        return self.quantity * self.unit_price_cents


@dataclass
class Order:
    order_id: str
    created: datetime
    items: list[LineItem] = field(default_factory=list)
    note: str = ""

    @property
    def total_cents(self) -> int:
        return sum(item.total_cents for item in self.items)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["created"] = self.created.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Order":
        return cls(**data)
