"""Messages between the harness, the call driver and the candidate's worker: length-prefixed pickles.

Pickle is only trusted in one direction. What the harness sends down (jobs, inputs) is loaded with
`pickle`; whatever comes back up from a process that ran candidate code is loaded with `load_plain`,
which builds plain data only (numbers, strings, bytes, containers, and a few value types) and refuses
any other class, so an answer can neither run code on load nor carry an object whose `__eq__` lies.

Standard library only: the call driver and the worker import this file from inside the sandbox.
"""

from __future__ import annotations

import collections
import io
import pickle
import socket
import struct

HEADER = struct.Struct("!Q")
# Value types an answer may hold besides the ones pickle builds without naming a class (int, float, str,
# bytes, bytearray, bool, None, list, tuple, dict, set, frozenset).
PLAIN_CLASSES = {("builtins", "complex"), ("collections", "OrderedDict"), ("collections", "Counter"), ("collections", "deque"),
                 ("decimal", "Decimal"), ("fractions", "Fraction")}
# Pickle can share one object many times (a tuple of two copies of a tuple of two copies of ...): comparing or
# hashing such an answer would take forever, so an answer may reach at most this many values counted as a tree.
MAX_VALUES = 20_000_000


class WireError(Exception):
    """The other side hung up, broke the framing, sent too much, or sent something that is not plain data."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in PLAIN_CLASSES:
            raise WireError(f"not plain data: {module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise WireError("not plain data: a persistent id")


def load_plain(data: bytes):
    try:
        value = _PlainUnpickler(io.BytesIO(data)).load()
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed payload is the sender's fault
        raise WireError(f"unreadable answer: {type(exc).__name__}: {exc}") from None
    _check_size(value)
    return value


def _check_size(value) -> None:
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise WireError(f"answer has more than {MAX_VALUES} values (counting shared ones each time)")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset, collections.deque)):
            stack.extend(item)


def send(sock: socket.socket, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(HEADER.pack(len(data)) + data)


def recv_bytes(sock: socket.socket, max_bytes: int) -> bytes:
    (size,) = HEADER.unpack(_exactly(sock, HEADER.size))
    if size > max_bytes:
        raise WireError(f"message of {size} bytes is over the {max_bytes}-byte limit")
    return _exactly(sock, size)


def recv(sock: socket.socket, max_bytes: int = 1 << 40):
    """A message from a trusted sender (the harness)."""
    return pickle.loads(recv_bytes(sock, max_bytes))


def recv_plain(sock: socket.socket, max_bytes: int):
    """A message from a process that ran candidate code."""
    return load_plain(recv_bytes(sock, max_bytes))


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise WireError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
