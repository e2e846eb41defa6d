from audit import AuditLog
from events import EventBus


def test_publish_calls_handler():
    bus = EventBus()
    seen = []
    bus.subscribe("user.login", seen.append)
    assert bus.publish("user.login", "ana") == 1
    assert seen == ["ana"]


def test_unsubscribe():
    bus = EventBus()
    seen = []
    bus.subscribe("user.logout", seen.append)
    bus.unsubscribe("user.logout", seen.append)
    assert bus.publish("user.logout", "ana") == 0
    assert seen == []


def test_buses_are_independent():
    first, second = EventBus(), EventBus()
    seen = []
    first.subscribe("ping", seen.append)
    assert second.publish("ping", 1) == 0
    assert seen == []
    assert second.events() == []


def test_new_bus_starts_empty():
    EventBus().subscribe("order.created", print)
    assert EventBus().events() == []


def test_audit_logs_are_per_bus():
    shop_a, shop_b = EventBus(), EventBus()
    log_a = AuditLog().attach(shop_a)
    log_b = AuditLog().attach(shop_b)
    shop_a.publish("order.created", {"id": 7})
    shop_b.publish("refund.issued", {"id": 9})
    assert log_a.entries == ["order.created #7"]
    assert log_b.entries == ["refund.issued #9"]
