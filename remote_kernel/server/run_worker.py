"""``RunWorker``: a session's runs, one at a time in the order they came, each driven to its end.

A query run is an execute request to the session's engine (engine.py: its ``InnerKernel``, or a
``ProgramEngine``); it finishes once both the reply and the idle status are in, or when the
kernel dies under it.  A batch run is a ``BatchRunner``'s shell commands in the session's folder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from remote_kernel import protocol
from remote_kernel.server import comms, records
from remote_kernel.server.batch import BatchRunner
from remote_kernel.server.engine import Engine
from remote_kernel.server.runs import RUN_WAITING_INPUT, Run
from remote_kernel.server.tasks import cancel_all

IDLE_GRACE = 2.0  # seconds a run waits for its idle status once the reply is in
LIVENESS_PERIOD = 0.2  # how often a running cell checks that its kernel is still alive


class _Cell:
    """The inner kernel's messages about one query run (an ``inner_kernel.Listener``)."""

    def __init__(self, run: Run, log: logging.LoggerAdapter):
        self.run = run
        self._log = log
        self.reply_status: str | None = None
        self.reply: dict = {}
        self.idle_seen = False
        self.errored = False

    def on_iopub(self, msg: dict) -> bool:
        """False: not a record of this run but an event (comms.EventLog) — a comm message the
        run did not ask for (jupyter-comms), output that comes after the run's end."""
        msg_type = msg.get("msg_type")
        if msg_type in comms.COMM_MSG_TYPES:
            if self.run.finished or not comms.wants_comms(self.run):
                return False
            self.run.add([comms.comm_record(msg)])
            return True
        if self.run.finished and msg_type != "status":
            return False
        self.on_output(msg_type, msg.get("content") or {})
        return True

    def on_output(self, msg_type: str, content: dict) -> None:
        if msg_type == "status":
            if content.get("execution_state") == "idle":
                self.idle_seen = True
                self._finish_if_done()
            return
        if msg_type == "error":
            self.errored = True
        found = records.translate(msg_type, content, self.run.jupyter)
        if found:
            self.run.add(found)

    def on_reply(self, content: dict) -> None:
        self.reply_status = content.get("status", "error")
        self.reply = content
        self.run.replied()
        self._finish_if_done()
        if not self.run.finished:
            # The idle status follows at once; if iopub lost it (its socket still
            # reconnecting after a restart), the run must still end.
            asyncio.get_running_loop().call_later(IDLE_GRACE, self._finish_without_idle)

    def on_input_request(self, content: dict) -> None:
        prompt_records, options = records.input_prompt(content, self.run.jupyter)
        self.run.add(prompt_records)
        self.run.wait_input(options)

    def _finish_without_idle(self) -> None:
        if not self.run.finished:
            self._log.debug("no idle status after the reply; finishing the run")
            self.idle_seen = True
            self._finish_if_done()

    def _finish_if_done(self) -> None:
        # finish right here (not in the worker) so the waiting request wakes one hop sooner
        if self.reply_status is not None and self.idle_seen:
            # our extensions: the inner kernel's reply, so the bridge replies exactly as it did
            options = {"reply": records.reply_summary(self.reply)} if self.run.jupyter else None
            exit_code = self.reply.get("exitCode")  # a program's own (engine.py)
            if not isinstance(exit_code, int):
                exit_code = 0 if self.reply_status == "ok" and not self.errored else 1
            self.run.finish(exit_code, options)


class RunWorker:
    def __init__(self, kernel: Engine, batch_runner: Callable[[Run], BatchRunner], finished_run_ttl: float,
                 on_kernel_died: Callable[[], None], log: logging.LoggerAdapter):
        self._kernel = kernel
        self._batch_runner = batch_runner
        self._finished_run_ttl = finished_run_ttl
        self._on_kernel_died = on_kernel_died
        self._log = log
        self.runs: dict[str, Run] = {}
        self.active: Run | None = None
        self.num_queries = 0
        self._queue: asyncio.Queue[Run] = asyncio.Queue()
        self._batch: BatchRunner | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._work())

    async def stop(self) -> None:
        await cancel_all([self._task] if self._task is not None else [])

    @property
    def cell_running(self) -> bool:
        """The inner kernel runs a cell of ours (not a batch run's commands)."""
        return self.active is not None and self._batch is None

    def submit(self, run: Run) -> None:
        self.runs[run.run_id] = run
        self._queue.put_nowait(run)

    def purge_runs(self) -> None:
        """Finished runs stay fetchable until the next run starts or their TTL passes."""
        now = time.monotonic()
        for run_id, run in list(self.runs.items()):
            if run.finished and run is not self.active and (
                    self.active is not None or now - run.finished_at > self._finished_run_ttl):
                del self.runs[run_id]

    def abandon(self, why: str) -> None:
        """Every unfinished run ends (as when a real server's session vanishes); a batch
        command running is killed."""
        for run in list(self.runs.values()):
            if not run.finished:
                run.add(records.kernel_died_records(run.jupyter, why))
                run.finish(protocol.EXIT_SESSION_VANISHED)
        if self._batch is not None:
            self._batch.kill()

    def send_input(self, run: Run, text: str) -> None:
        if run.state == RUN_WAITING_INPUT and run.mode != protocol.MODE_BATCH:
            run.resume()
            self._kernel.send_input(text)

    async def interrupt(self) -> None:
        if self._batch is not None:
            self._batch.interrupt()
        elif self.active is not None:
            await self._kernel.interrupt()

    async def _work(self) -> None:
        while True:
            run = await self._queue.get()
            if run.finished:
                continue
            self.active = run
            self.purge_runs()
            run.start()
            self.num_queries += 1
            try:
                if run.mode == protocol.MODE_BATCH:
                    self._batch = self._batch_runner(run)
                    await self._batch.execute()
                else:
                    await self._execute(run)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one run's failure must not stop the session
                self._log.exception("run failed")
                run.add([["stderr", f"[remote-kernel] internal error: {type(exc).__name__}\n"]])
                run.finish(1)
            finally:
                self._batch = None
                self.active = None

    async def _execute(self, run: Run) -> None:
        if comms.wants_comms(run):
            self._kernel.events.enable()  # what the cell leaves behind comes as events
        msg_id = self._kernel.execute(run.code, run.allow_stdin, _Cell(run, self._log),
                                      msg_id=run.options.get("msgId"))
        try:
            while not run.finished_event.is_set():
                try:
                    await asyncio.wait_for(run.finished_event.wait(), LIVENESS_PERIOD)
                except asyncio.TimeoutError:
                    if not await self._kernel.is_alive():
                        self._on_kernel_died()
                        return
        finally:
            self._kernel.forget(msg_id)
