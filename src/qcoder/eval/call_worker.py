"""The candidate's process: load its code, then answer calls. Forked by `call_driver.py` before the driver
has read its job, so nothing secret was ever in this process's memory; runs under the reliability guard.

Receives {"code", "entry_point"} on its end of a private socket pair, answers ("ready", None) or
("raise", message); then for each argument tuple it receives, answers ("ok", value) or ("raise", message).
Nothing here is trusted: the driver reads the answers as plain data and decides.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import socket

import guard  # beside this file, like wire (the driver put this directory on sys.path)
import wire


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _reply(sock: socket.socket, kind: str, value) -> None:
    try:
        data = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - a generator, a lambda, an open file...
        data = pickle.dumps(("raise", f"returned a {type(value).__name__}, which is not plain data"))
    sock.sendall(wire.HEADER.pack(len(data)) + data)


def serve(sock: socket.socket) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # prints that bypass sys.stdout go nowhere
    guard.apply()
    job = wire.recv(sock)
    namespace = {"__name__": "__solution__"}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(job["code"], "solution.py", "exec"), namespace)
        function = namespace[job["entry_point"]]
    except BaseException as exc:  # noqa: BLE001 - whatever the code does while loading is its answer
        _reply(sock, "raise", _describe(exc))
        return
    _reply(sock, "ready", None)
    while True:
        try:
            args = wire.recv(sock)
        except wire.WireError:
            return  # the driver is done with us
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                value = function(*args)
        except BaseException as exc:  # noqa: BLE001
            _reply(sock, "raise", _describe(exc))
            continue
        _reply(sock, "ok", value)
