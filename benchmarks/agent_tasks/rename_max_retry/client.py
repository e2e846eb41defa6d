"""A client that retries failed calls."""

import settings


class Client:
    def __init__(self, transport):
        self.transport = transport
        self.attempts = 0

    def call(self, request: str) -> str:
        last = None
        for _ in range(1 + settings.MAX_RETRY):
            self.attempts += 1
            try:
                return self.transport(request)
            except ConnectionError as exc:
                last = exc
        raise last
