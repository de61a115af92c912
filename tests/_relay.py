"""Plumbing of the tests' small loopback servers and proxies (test_streaming, test_tls,
test_client_loopback): a listener whose every connection is handled on its own thread, and a
byte pump between two sockets."""

from __future__ import annotations

import socket
import threading
from typing import Callable


class Listener:
    """Accepts on 127.0.0.1 (a free port) and calls ``handle(connection)`` on a thread each."""

    def __init__(self, handle: Callable[[socket.socket], None]):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._handle = handle
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()


def splice(a: socket.socket, b: socket.socket) -> None:
    """Relay bytes both ways until either side ends; returns when a → b is done."""
    threading.Thread(target=_pump, args=(b, a), daemon=True).start()
    _pump(a, b)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass
