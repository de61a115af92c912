"""``WarmPool``: Python kernels started before anyone asks for them.

Starting an IPython kernel takes about half a second, most of a new session's creation.  The
pool keeps ``--warm-kernels`` spare sessions of the server's own Python running, each in a
fresh ``.spare-*`` folder under the root; a create request that a spare can serve (a Python
image, no extra environment) adopts one: its folder is renamed to the session's (the kernel's
working directory follows the rename), and a replacement starts once the server is quiet (no
cell has run for ``QUIET`` seconds, at least ``REFILL_DELAY`` after the take): a kernel's start
is half a second of CPU, which must not land on the new session's first cells.  A server that
is never quiet still gets its spare after ``REFILL_PATIENCE`` seconds.

A spare is an ordinary session that belongs to nobody yet: the registry that owns the pool
starts it (``spawn``) and stops it (``stop``) with the same code as any session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Protocol

from remote_kernel.server import images
from remote_kernel.server.errors import APIProblem

log = logging.getLogger("remote_kernel.server")

REFILL_DELAY = 1.0
QUIET = 0.5
REFILL_PATIENCE = 30.0
SPARE_IMAGE = "python"
SPARE_CHECK_TIMEOUT = 3.0  # an adopted spare must answer kernel_info within this


class Spare(Protocol):
    """What the pool needs of a spare session."""

    name: str
    pid: int

    def is_running(self) -> bool: ...

    async def answers(self, timeout: float) -> bool: ...

    async def restart(self) -> None: ...


class WarmPool:
    def __init__(self, size: int, spawn: Callable[[], Awaitable[Spare]], stop: Callable[[Spare], Awaitable[None]],
                 is_quiet: Callable[[float], bool], refill_delay: float = REFILL_DELAY):
        """``spawn`` starts a spare (of ``SPARE_IMAGE``), ``stop`` stops one, ``is_quiet(s)``
        says that no cell ran for ``s`` seconds."""
        self.size = max(0, size)
        self.refill_delay = refill_delay
        self._spawn = spawn
        self._stop = stop
        self._is_quiet = is_quiet
        self.spares: list[Spare] = []
        self._starting: set[asyncio.Task] = set()  # spares on their way (counted as spares)
        self._stopping: set[asyncio.Task] = set()  # dead or surplus spares being stopped
        self._closed = False

    def start(self) -> None:
        self._refill(0.0)

    async def adopt(self, kernel_name: str, environ: dict, claim: Callable[[Spare], None]) -> Spare | None:
        """A spare made the new session of ``kernel_name`` with ``environ`` by ``claim`` (which
        gives it its owner, name and folder), or None when no spare can serve.  A spare that
        died or hung while it waited gets a new kernel in its new folder; when that fails too,
        it is stopped and the restart's ``APIProblem`` raised."""
        spare = self._take(kernel_name, environ)
        if spare is None:
            return None
        claim(spare)
        if not await spare.answers(SPARE_CHECK_TIMEOUT) or not spare.is_running():
            log.warning("session %s: the spare kernel did not answer; starting a new one", spare.name)
            try:
                await spare.restart()
            except APIProblem:
                await self._stop(spare)
                raise
        return spare

    def _take(self, kernel_name: str, environ: dict) -> Spare | None:
        """A running spare for a session of ``kernel_name`` with ``environ``, or None."""
        if kernel_name != images.OWN_PYTHON or environ or self._closed:
            return None
        taken = None
        while self.spares and taken is None:
            spare = self.spares.pop(0)
            if spare.is_running():
                taken = spare
            else:  # it died while waiting
                self._discard(spare)
        self._refill(self.refill_delay)
        return taken

    def _refill(self, delay: float) -> None:
        for _ in range(self.size - len(self.spares) - len(self._starting)):
            task = asyncio.create_task(self._add_spare(delay))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _add_spare(self, delay: float) -> None:
        await asyncio.sleep(delay)
        # (at the server's start there is no session yet, so it is quiet at once)
        patience_ends = asyncio.get_running_loop().time() + REFILL_PATIENCE
        while not self._is_quiet(QUIET) and asyncio.get_running_loop().time() < patience_ends:
            await asyncio.sleep(QUIET / 2)
        try:
            spare = await self._spawn()
        except BaseException as exc:  # noqa: BLE001 - no retry loop: the next take refills
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("a spare kernel failed to start: %s", type(exc).__name__)
            return
        if self._closed:
            self._discard(spare)
        else:
            self.spares.append(spare)
            log.info("spare kernel %s ready", spare.pid)

    def _discard(self, spare: Spare) -> None:
        task = asyncio.ensure_future(self._stop(spare))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def shutdown(self) -> None:
        self._closed = True
        for _ in range(10):  # a cancelled start stops its spare first, which takes a moment
            if not self._starting:
                break
            for task in list(self._starting):
                task.cancel()
            await asyncio.wait(list(self._starting), timeout=5)
        spares, self.spares = self.spares, []
        await asyncio.gather(*self._stopping, *(self._stop(s) for s in spares), return_exceptions=True)
