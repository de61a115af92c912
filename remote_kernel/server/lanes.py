"""``Lane``: one session's file work (uploads, downloads, listings), done in order on a thread
of its own, so that one session's files never starve another's.

File calls run on threads because file systems block.  With the default executor of asyncio
they shared a handful of threads: a session whose code made a call hang (a FIFO opened for
writing blocks until someone reads; a FUSE folder may never answer) took the threads of every
other session's calls, and the server could not exit, since Python joins those threads.  A lane
has one daemon thread, started on demand and ended after ``IDLE`` seconds without work: what
hangs stays in its own session, and never holds up the server's exit.  A lane holds at most
``MAX_WAITING`` calls, and a call waits at most ``CALL_TIMEOUT`` seconds; beyond either, the
call is answered 503 ``service-unavailable``.  At most ``MAX_THREADS`` lane threads exist at once
(threads stuck in a destroyed session's calls count until they return).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import weakref
from typing import Any, Callable

from remote_kernel.server.errors import APIProblem

IDLE = 10.0
MAX_WAITING = 64
CALL_TIMEOUT = 120.0
MAX_THREADS = 64

_threads = 0
_threads_lock = threading.Lock()
_lanes: "weakref.WeakKeyDictionary[object, Lane]" = weakref.WeakKeyDictionary()


def lane_of(session: object) -> "Lane":
    """The lane of ``session`` (made on first use, gone with the session)."""
    lane = _lanes.get(session)
    if lane is None:
        lane = _lanes[session] = Lane()
    return lane


def _unavailable(msg: str) -> APIProblem:
    return APIProblem(503, "service-unavailable", "Service unavailable.", msg)


class _Call:
    __slots__ = ("func", "args", "future", "loop", "abandoned")

    def __init__(self, func, args, future, loop):
        self.func, self.args, self.future, self.loop = func, args, future, loop
        self.abandoned = False


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Lane:
    def __init__(self) -> None:
        self._calls: collections.deque[_Call] = collections.deque()
        self._cond = threading.Condition()
        self._running = False  # a thread serves this lane

    async def run(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` on this lane's thread, after the calls before it."""
        global _threads
        loop = asyncio.get_running_loop()
        call = _Call(func, args, loop.create_future(), loop)
        with self._cond:
            if len(self._calls) >= MAX_WAITING:
                raise _unavailable(f"more than {MAX_WAITING} file calls of this session are waiting")
            if not self._running:
                with _threads_lock:
                    if _threads >= MAX_THREADS:
                        raise _unavailable("too many file calls are stuck on this server")
                    _threads += 1
                self._running = True
                try:
                    threading.Thread(target=self._serve, name="rk-file-lane", daemon=True).start()
                except RuntimeError:  # no thread to be had
                    self._running = False
                    with _threads_lock:
                        _threads -= 1
                    raise _unavailable("the server cannot start a thread for file calls") from None
            self._calls.append(call)
            self._cond.notify()
        try:
            return await asyncio.wait_for(asyncio.shield(call.future), CALL_TIMEOUT)
        except asyncio.TimeoutError:
            raise _unavailable(f"this session's files did not answer within {CALL_TIMEOUT:.0f} s") from None
        finally:
            call.abandoned = True  # a call still waiting is skipped

    def _serve(self) -> None:
        global _threads
        try:
            while True:
                with self._cond:
                    if not self._calls:
                        self._cond.wait(IDLE)
                    if not self._calls:
                        self._running = False
                        return
                    call = self._calls.popleft()
                if call.abandoned:
                    continue
                result = error = None
                try:
                    result = call.func(*call.args)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    error = exc
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    call.loop.call_soon_threadsafe(_settle, call.future, result, error)
        finally:
            with _threads_lock:
                _threads -= 1
