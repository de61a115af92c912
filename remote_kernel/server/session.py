"""``Session``: one session of the API — its identity (id, name, owner, image), folder, status and
environment — whose runs a ``RunWorker`` drives on its engine (engine.py): an ``InnerKernel``, or
a ``ProgramEngine`` for a language without a Jupyter kernel here.

A spare of the warm pool is a session that belongs to nobody yet; ``adopt`` makes it one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import time
import uuid
from typing import Callable

from remote_kernel import protocol
from remote_kernel.server.batch import BatchRunner
from remote_kernel.server.config import ServerConfig
from remote_kernel.server.engine import new_engine
from remote_kernel.server.inner_kernel import SHELL_TIMEOUT
from remote_kernel.server.run_worker import RunWorker
from remote_kernel.server.runs import Run

log = logging.getLogger("remote_kernel.server")

# never hand the server's own credentials to user code
_SECRET_ENV = ("BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY", "SORNA_ACCESS_KEY", "SORNA_SECRET_KEY")


class _SessionLog(logging.LoggerAdapter):
    """Log lines that start with the session's name as it is now (a spare's changes on adoption)."""

    def process(self, msg, kwargs):
        return f"session {self.extra['session'].name}: {msg}", kwargs


class Session:
    def __init__(self, owner: str, name: str, image: str, kernel_name: str, language: str, cwd: str,
                 owns_cwd: bool, environ: dict, *, config: ServerConfig, kernel_specs, logs_dir: str,
                 on_death: Callable[["Session"], None]):
        self.id = str(uuid.uuid4())
        self.owner = owner
        self.name = name
        self.image = image
        self.kernel_name = kernel_name
        self.language = language
        self.cwd = cwd
        self.owns_cwd = owns_cwd
        self.environ = environ
        self.created_at = time.time()
        self.last_used = time.monotonic()
        self.status = protocol.SESSION_PENDING
        self.status_info = ""  # the status's detail, as a real manager's statusInfo (startup.py)
        self.ready = asyncio.get_running_loop().create_future()
        self._on_death = on_death
        self.log = _SessionLog(log, {"session": self})
        self.kernel = new_engine(kernel_name, kernel_specs, os.path.join(logs_dir, self.id),
                                 config.kernel_start_timeout, self.log)
        self.worker = RunWorker(self.kernel, self._batch_runner, config.finished_run_ttl, self._died, self.log)

    # -- lifecycle ---------------------------------------------------------------------------

    def kernel_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
        # the server's interpreter first, so batch "python" and the kernel agree
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(self.environ)
        return env

    def _batch_runner(self, run: Run) -> BatchRunner:
        return BatchRunner(run, self.cwd, self.kernel_env(), self.language)

    async def start(self) -> None:
        await self.kernel.start(self.cwd, self.kernel_env())
        self.worker.start()
        self.status = protocol.SESSION_RUNNING

    async def stop(self) -> None:
        """Stop the kernel: every run gets its final result first, then a shutdown request with
        ``KERNEL_GRACE`` seconds to act on it, then SIGKILL to its process group (its children too).
        Bounded whatever the cell does (sleeping, waiting for input, ignoring signals)."""
        if self.status == protocol.SESSION_TERMINATED:
            return
        self.status = protocol.SESSION_TERMINATED
        cell_running = self.worker.cell_running
        self.worker.abandon("the session was destroyed")
        await self.worker.stop()
        await self.kernel.stop(interrupt_first=cell_running)
        if self.owns_cwd:
            shutil.rmtree(self.cwd, ignore_errors=True)

    async def restart(self) -> None:
        self.worker.abandon("the session was restarted")
        # cwd: an adopted spare's kernel was launched in the folder that became this one
        await self.kernel.restart(self.cwd)

    def _died(self) -> None:
        code = self.kernel.exit_code()
        self.status = protocol.SESSION_DEAD
        self.worker.abandon(f"exit code {code}" if code is not None else "it exited")
        self.log.warning("kernel died (exit code %s)", code)
        self._on_death(self)

    def is_running(self) -> bool:
        return self.status == protocol.SESSION_RUNNING and self.kernel.running()

    @property
    def pid(self) -> int:
        return self.kernel.pid

    def adopt(self, owner: str, name: str, image: str, cwd: str, owns_cwd: bool) -> None:
        """A spare (warm.py) becomes this owner's session; its kernel is already running."""
        self.owner, self.name, self.image = owner, name, image
        self.cwd, self.owns_cwd = cwd, owns_cwd
        self.created_at = time.time()
        self.touch()

    async def answers(self, timeout: float) -> bool:
        """The kernel answers a kernel_info request within ``timeout`` seconds."""
        return await self.kernel.request("kernel_info", timeout=timeout) is not None

    # -- runs --------------------------------------------------------------------------------

    def touch(self) -> None:
        self.last_used = time.monotonic()

    @property
    def runs(self) -> dict[str, Run]:
        return self.worker.runs

    @property
    def active(self) -> Run | None:
        return self.worker.active

    @property
    def num_queries(self) -> int:
        return self.worker.num_queries

    def submit(self, run: Run) -> None:
        self.worker.submit(run)

    def purge_runs(self) -> None:
        self.worker.purge_runs()

    async def send_input(self, run: Run, text: str) -> None:
        self.worker.send_input(run, text)

    async def interrupt(self) -> None:
        await self.worker.interrupt()

    async def shell_request(self, kind: str, timeout: float = SHELL_TIMEOUT, **kwargs) -> dict | None:
        """complete/inspect/is_complete on the inner kernel; None when it does not answer in time."""
        return await self.kernel.request(kind, timeout, **kwargs)

    # -- reports -----------------------------------------------------------------------------

    def info(self) -> dict:
        return {
            "sessionId": self.id, "sessionName": self.name, "kernelId": self.name,
            "image": self.image, "lang": self.image, "kernelspec": self.kernel_name,
            "status": self.status, "statusInfo": self.status_info, "age": int((time.time() - self.created_at) * 1000),
            "creationTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
            "terminationTime": None, "numQueriesExecuted": self.num_queries,
            "occupiedSlots": {}, "servicePorts": [], "tag": None,
        }

    def active_run_report(self) -> dict | None:
        """Our session-list extension: the run going on (or waiting, or just finished and not
        fetched to its end), so a bridge that attaches can go on from the last acknowledged
        record: ``{"runId", "mode", "state", "cursor", "end"}`` (the latest run, while the server
        keeps it)."""
        run = self.active or (list(self.runs.values())[-1] if self.runs else None)
        if run is None:
            return None
        return {"runId": run.run_id, "mode": run.mode, "state": run.state, "cursor": run.acked, "end": run.end}

    def read_logs(self, limit: int = 256 * 1024) -> str:
        return self.kernel.read_log(limit)
