"""A loopback TCP proxy that misbehaves on purpose: the flaky network of the fault tests.

It sits between the bridge and the embedded server. Per request (keep-alive connections carry
many) it draws, from a seeded RNG, whether to reset the connection (after forwarding the request, before or while relaying the
answer, i.e. when a lost response hurts most) or to delay it. Counters tell the test how much
mischief was done, so a test can assert the faults really happened.

The shares and ``read_delay`` are read at every connection/answer, so a test may change them
while the proxy runs (e.g. a clean warm-up, then the storm).  ``max_consecutive_resets`` bounds
a burst: a client that retries that many times always gets through (a network that is flaky,
not down).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time


class FlakyProxy:
    def __init__(self, target_host: str, target_port: int, *, reset_share: float = 0.2,
                 delay_share: float = 0.2, max_delay: float = 0.3, read_delay: float = 0.0,
                 max_consecutive_resets: int | None = None, cut_with: str = "rst", seed: int = 1234):
        self.target = (target_host, target_port)
        self.reset_share = reset_share
        self.delay_share = delay_share
        self.max_delay = max_delay
        self.read_delay = read_delay  # every answer held this long (a slow server)
        self.max_consecutive_resets = max_consecutive_resets
        # "rst": the client sees 'connection reset'; "fin": an orderly close mid-answer (a
        # middlebox giving up) — the client sees a truncated answer and must notice it
        self.cut_with = cut_with
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.connections = 0
        self.doomed = 0   # requests drawn for a reset
        self.resets = 0   # answers actually cut (a short answer may end before its cut point)
        self.delays = 0
        self.reset_requests: list[str] = []  # request lines whose answer a reset cut
        self._consecutive = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _decide(self) -> str:
        with self.lock:
            self.connections += 1
            draw = self.rng.random()
            burst_over = (self.max_consecutive_resets is not None
                          and self._consecutive >= self.max_consecutive_resets)
            if draw < self.reset_share and not burst_over:
                self.doomed += 1
                self._consecutive += 1
                return "reset"
            self._consecutive = 0
            if draw < self.reset_share + self.delay_share:
                self.delays += 1
                return "delay"
            return "pass"

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=60)
        except OSError:
            _abort(client)
            return
        conn = _Connection()
        threading.Thread(target=self._forward_requests, args=(client, upstream, conn), daemon=True).start()
        self._relay_answers(upstream, client, conn)

    def _forward_requests(self, src: socket.socket, dst: socket.socket, conn: "_Connection") -> None:
        """Client → server as is; each new request draws its fate (its answer may be cut)."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                first = data.split(b"\r\n", 1)[0]
                if first.split(b" ", 1)[0] in (b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD"):
                    fate = self._decide()
                    if fate == "delay":
                        time.sleep(self.rng.uniform(0, self.max_delay))
                    conn.last_request = first.decode("latin-1")
                    conn.cut_after = self.rng.randint(0, 200) if fate == "reset" else None
                    conn.answer_sent = 0
                    conn.answer_pending = True
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not conn.aborted:  # an abort's RST must not be preceded by our FIN
                _close(src, dst)

    def _relay_answers(self, src: socket.socket, dst: socket.socket, conn: "_Connection") -> None:
        """Server → client, cut (RST both ways) after ``cut_after`` bytes of a doomed answer."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if conn.answer_pending:  # the first bytes of an answer: a slow server holds them
                    conn.answer_pending = False
                    if self.read_delay:
                        time.sleep(self.read_delay)
                cut_after = conn.cut_after
                if cut_after is not None and conn.answer_sent + len(data) > cut_after:
                    dst.sendall(data[: max(0, cut_after - conn.answer_sent)])
                    with self.lock:
                        self.resets += 1
                        self.reset_requests.append(conn.last_request)
                    if self.cut_with == "fin":
                        _close(dst, src)
                    else:
                        conn.aborted = True
                        _abort(dst)
                        _abort(src)
                    return
                dst.sendall(data)
                conn.answer_sent += len(data)
        except OSError:
            pass
        finally:
            _close(src, dst)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Connection:
    def __init__(self) -> None:
        self.last_request = ""
        self.answer_pending = False
        self.cut_after: int | None = None
        self.answer_sent = 0
        self.aborted = False


def _abort(sock: socket.socket) -> None:
    """Close with RST rather than FIN: the peer sees 'connection reset'.

    Another thread may be blocked in ``recv`` on this socket, which keeps the file open past
    ``close()`` (no RST until it returns): ``SHUT_RD`` wakes it without sending anything."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass
