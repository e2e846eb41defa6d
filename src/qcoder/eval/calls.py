"""The harness's side of `call_driver.py`: start it in the sandbox, send it a job, hear what it reports.

Each run gets a fresh secret nonce, which only the harness and the driver know: a report without it is
not a report. The reports are read as plain data (`wire.recv_plain`), like anything that comes out of
a sandbox.
"""

from __future__ import annotations

import secrets
import socket
import sys
from pathlib import Path

from qcoder.eval import sandbox, wire

DRIVER = str(Path(__file__).with_name("call_driver.py"))
MAX_REPORT_BYTES = 1 << 30


class DriverError(Exception):
    """The driver itself failed: a harness problem, not the candidate's."""


class Line:
    def __init__(self, sock: socket.socket, nonce: str):
        self.sock, self.nonce = sock, nonce

    def receive(self) -> dict | None:
        """The driver's next report, or None when the line went quiet or carried something else."""
        try:
            message = wire.recv_plain(self.sock, MAX_REPORT_BYTES)
        except (wire.WireError, OSError):
            return None
        if not isinstance(message, dict) or message.get("nonce") != self.nonce:
            return None
        if "harness_error" in message:
            raise DriverError(f"call driver failed: {message['harness_error']}")
        return message

    def reply(self, text: str) -> None:
        try:
            wire.send(self.sock, text)
        except OSError:
            pass  # the driver is gone; what it reported so far stands


def run_driver(job: dict, limits: sandbox.Limits, converse) -> sandbox.SandboxResult:
    """Run the driver on `job`; `converse(line)` reads its reports (and answers them) while it runs."""
    nonce = secrets.token_hex(16)

    def talk(sock: socket.socket):
        try:
            wire.send(sock, {**job, "nonce": nonce})
        except OSError:
            return None  # the driver never started (the sandbox result says why)
        return converse(Line(sock, nonce))

    return sandbox.run([sys.executable, "-I", DRIVER], limits=limits, channel=talk)
