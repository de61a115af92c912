"""``cancel_all``: stopping a session's background tasks (channel readers, run worker) for sure."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("remote_kernel.server")


async def cancel_all(tasks: list[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again as needed: on Python 3.11
    ``asyncio.wait_for`` drops a cancellation that arrives as its awaitable completes (here:
    the run finished by ``stop`` itself), which left the worker running and ``stop`` hung."""
    pending = [task for task in tasks if not task.done()]
    for _ in range(20):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.25)
    log.warning("%d session task(s) ignored cancellation", len(pending))
