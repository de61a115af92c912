"""``WarmPool``: Python kernels started before anyone asks for them.

Starting an IPython kernel takes about half a second, most of a new session's creation.  The
pool keeps ``--warm-kernels`` spare sessions of the server's own Python running, each in a
fresh ``.spare-*`` folder under the root; a create request that a spare can serve (a Python
image, no extra environment) adopts one: its folder is renamed to the session's (the kernel's
working directory follows the rename), and a replacement starts once the server is quiet (no
cell has run for ``QUIET`` seconds, at least ``REFILL_DELAY`` after the take): a kernel's start
is half a second of CPU, which must not land on the new session's first cells.  A server that
is never quiet still gets its spare after ``REFILL_PATIENCE`` seconds.

A spare is an ordinary ``Session`` that belongs to nobody yet: it is stopped, killed and
cleaned up by the same code as any session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from remote_kernel.server import images

if TYPE_CHECKING:
    from remote_kernel.server.sessions import Session, SessionManager

log = logging.getLogger("remote_kernel.server")

REFILL_DELAY = 1.0
QUIET = 0.5
REFILL_PATIENCE = 30.0
SPARE_IMAGE = "python"


class WarmPool:
    def __init__(self, manager: "SessionManager", size: int, refill_delay: float = REFILL_DELAY):
        self.manager = manager
        self.size = max(0, size)
        self.refill_delay = refill_delay
        self.spares: list["Session"] = []
        self._starting: set[asyncio.Task] = set()  # spares on their way (counted as spares)
        self._stopping: set[asyncio.Task] = set()  # dead or surplus spares being stopped
        self._closed = False

    def start(self) -> None:
        self._refill(0.0)

    def take(self, kernel_name: str, environ: dict) -> "Session | None":
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
            task = asyncio.create_task(self._spawn(delay))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _spawn(self, delay: float) -> None:
        await asyncio.sleep(delay)
        manager = self.manager
        # (at the server's start there is no session yet, so it is quiet at once)
        patience_ends = asyncio.get_running_loop().time() + REFILL_PATIENCE
        while not manager.quiet_for(QUIET) and asyncio.get_running_loop().time() < patience_ends:
            await asyncio.sleep(QUIET / 2)
        cwd, owns_cwd = manager.spare_workdir()
        spare = manager.new_session(owner="", name="spare", image=SPARE_IMAGE, kernel_name=images.OWN_PYTHON,
                                    language="python", environ={}, cwd=cwd, owns_cwd=owns_cwd)
        spare.ready.set_result(None)  # nobody waits for a spare to be created
        try:
            await spare.start()
        except BaseException as exc:  # noqa: BLE001 - no retry loop: the next take refills
            with contextlib.suppress(BaseException):
                await manager.stop_unregistered(spare)
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("a spare kernel failed to start: %s", type(exc).__name__)
            return
        if self._closed:
            self._discard(spare)
        else:
            self.spares.append(spare)
            log.info("spare kernel %s ready", spare.km.provisioner.pid)

    def _discard(self, spare: "Session") -> None:
        task = asyncio.ensure_future(self.manager.stop_unregistered(spare))
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
        await asyncio.gather(*self._stopping, *(self.manager.stop_unregistered(s) for s in spares),
                             return_exceptions=True)
