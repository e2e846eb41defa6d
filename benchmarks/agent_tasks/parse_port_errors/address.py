"""Parse the "host:port" the server listens on."""

DEFAULT_PORT = 8080


def parse_port(text: str) -> int:
    return int(text)


def parse_address(value: str) -> tuple[str, int]:
    """'localhost:9000' -> ('localhost', 9000); 'localhost' -> ('localhost', 8080)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, DEFAULT_PORT
    return host or "0.0.0.0", parse_port(port)
