"""Audit trail that listens to shop events."""

from dataclasses import dataclass, field

from events import EventBus

WATCHED = ("order.created", "order.cancelled", "refund.issued")


@dataclass
class AuditLog:
    entries: list[str] = field(default_factory=list)

    def attach(self, bus: EventBus) -> "AuditLog":
        for event in WATCHED:
            bus.subscribe(event, lambda payload, event=event: self.record(event, payload))
        return self

    def record(self, event: str, payload: dict) -> None:
        self.entries.append(f"{event} #{payload['id']}")
