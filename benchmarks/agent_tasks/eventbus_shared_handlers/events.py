"""A tiny in-process publish/subscribe bus."""

from typing import Any, Callable

Handler = Callable[[Any], None]


class EventBus:
    _handlers: dict[str, list[Handler]] = {}

    def subscribe(self, event: str, handler: Handler) -> None:
        self._handlers.setdefault(event, []).append(handler)

    def unsubscribe(self, event: str, handler: Handler) -> None:
        handlers = self._handlers.get(event, [])
        if handler in handlers:
            handlers.remove(handler)

    def publish(self, event: str, payload: Any = None) -> int:
        handlers = list(self._handlers.get(event, []))
        for handler in handlers:
            handler(payload)
        return len(handlers)

    def events(self) -> list[str]:
        return sorted(name for name, handlers in self._handlers.items() if handlers)
