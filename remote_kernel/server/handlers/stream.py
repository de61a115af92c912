"""The websocket variant of the execute loop (docs/PROTOCOL.md#streaming-over-a-websocket):
``GET /stream/session/{id}/execute`` (and ``/stream/kernel/...``), as real managers'
``stream_execute`` implements it.

The upgrade request is authenticated like every API call (BaseHandler.prepare) and an unknown
session is refused before the upgrade, so those failures stay problem+json HTTP answers.  One
connection is one run: the client's first text frame is ``{"mode", "code", "options"}``; the
server answers ``{"status", "console", "exitCode", "options", "files"}`` frames (REST results
without runId and cursor), takes the next text frame as the reply to each ``waiting-input``, and
closes after the final frame.  A client that leaves mid-run gets its run interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import tornado.websocket

from remote_kernel import jsonio, protocol
from remote_kernel.server import startup
from remote_kernel.server.base import BaseHandler
from remote_kernel.server.errors import APIProblem, bad_params
from remote_kernel.server.handlers.execute import code_of, new_run, options_of
from remote_kernel.server.handlers.root import classic_options
from remote_kernel.server.runs import RUN_QUEUED, Run

log = logging.getLogger("remote_kernel.server")

_FRAME_KEYS = ("status", "console", "exitCode", "options", "files")
# Real managers flush a streamed run every 0.2 s (their REST polls collect for ~2 s); a server
# told to coalesce longer (--coalesce, as a stand-in for a real manager) still streams this fast.
STREAM_FLUSH = 0.2
# Frames received that the run has not read yet (it reads the first and each input reply): with
# this many waiting, the server reads no more from the connection (tornado reads the next frame
# once ``on_message`` returns), so whatever else a client sends waits in its own socket.  With
# frames of at most ``max_message_size``, a connection's input is bounded in memory.
MAX_UNREAD_FRAMES = 2


class StreamExecuteHandler(BaseHandler, tornado.websocket.WebSocketHandler):
    def initialize(self, state) -> None:
        super().initialize(state)
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue(MAX_UNREAD_FRAMES)
        self._task: asyncio.Task | None = None
        self._done = False

    def family(self) -> str:
        return "/" + self.path_args[0]  # the path starts with /stream

    def check_origin(self, origin: str) -> bool:
        return True  # not a browser API: every request is signed, no cookies

    @property
    def max_message_size(self) -> int:
        return self.state.config.max_json_body

    async def get(self, family: str, ident: str) -> None:
        # refused before the upgrade: the client still reads a problem+json answer
        connection = {part.strip().lower() for part in self.request.headers.get("Connection", "").split(",")}
        if self.request.headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection:
            raise APIProblem(400, "generic-bad-request", "Bad request.", "this endpoint needs a websocket upgrade")
        self.session(ident, starting=True)  # one not running yet: upgraded, then closed (_serve)
        await super().get(family, ident)

    def open(self, family: str, ident: str) -> None:
        self._task = asyncio.create_task(self._serve(ident))

    async def on_message(self, message: str | bytes) -> None:
        if not self._done:
            await self._inbox.put(message)  # read only when the run wants it, like real servers

    def on_close(self) -> None:
        if self._task is not None:
            self._task.cancel()  # _serve interrupts the run if it is still going

    # -- the run -----------------------------------------------------------------------------

    async def _serve(self, ident: str) -> None:
        session = run = None
        try:
            try:
                mode, code, options = self._parse(await self._inbox.get())
                session = self.session(ident)  # destroyed since the upgrade?
                run = new_run(self, mode, None, code, options)
            except startup.NotRunning:
                return  # closed without a frame, as a real manager's session without an agent yet
            except APIProblem as exc:
                detail = f"Invalid API parameters: {exc.msg}" if exc.slug == "invalid-api-params" \
                    else f"{exc.title} ({exc.msg})"
                await self._send({"status": "error", "msg": detail})
                return
            session.submit(run)
            await self._stream(session, run)
        except (asyncio.CancelledError, tornado.websocket.WebSocketClosedError):
            pass  # the client left
        except Exception:  # noqa: BLE001 - one connection's failure must not reach the server
            log.exception("stream execute: unexpected error")
        finally:
            self._done = True
            while not self._inbox.empty():  # a frame waiting for room is let go
                self._inbox.get_nowait()
            if run is not None and not run.finished:
                await self._abandon(session, run)
            self.close(1000)  # a normal closure, as aiohttp's default (a no-op if the client left)

    def _parse(self, message: str | bytes) -> tuple[str, str, dict]:
        """The first frame, validated as the REST execute body is."""
        if not isinstance(message, str):
            raise bad_params("the first frame must be a JSON text frame")
        try:
            params = jsonio.loads(message)
        except (ValueError, RecursionError):
            raise bad_params("the first frame is not valid JSON") from None
        if not isinstance(params, dict):
            raise bad_params("the first frame must be a JSON object")
        mode = params.get("mode")
        if mode not in (protocol.MODE_QUERY, protocol.MODE_BATCH):
            raise bad_params(f"unknown mode {mode!r}; expected query or batch")
        code = code_of(params)
        options = options_of(params)
        if not self.state.config.extensions:  # --no-extensions
            options = classic_options(options)
        return mode, code, options

    async def _stream(self, session, run: Run) -> None:
        config = self.state.config
        while True:
            run.acknowledge(None)  # every frame sent so far counts as received
            await run.wait(config.hold, min(config.coalesce, STREAM_FLUSH), min(config.text_coalesce, STREAM_FLUSH))
            session.touch()
            result = run.result(None)
            status = result["status"]
            if status == protocol.STATUS_CONTINUED and not result["console"]:
                continue  # nothing new: real managers send nothing either
            await self._send({key: result[key] for key in _FRAME_KEYS})
            if status in protocol.TERMINAL_STATUSES:
                return
            if status == protocol.STATUS_WAITING_INPUT:
                reply = await self._reply(run)
                if reply is not None:
                    await session.send_input(run, reply)

    async def _reply(self, run: Run) -> str | None:
        """The client's next text frame, or None if the run ended meanwhile (interrupted by
        another client, session destroyed).  Binary frames are not replies: skipped."""
        ended = asyncio.ensure_future(run.finished_event.wait())
        getter = None
        try:
            while not ended.done():
                getter = asyncio.ensure_future(self._inbox.get())
                await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done() and isinstance(getter.result(), str):
                    return getter.result()
            return None
        finally:
            for task in (ended, getter):
                if task is not None:
                    task.cancel()  # a cancelled get leaves its frame in the queue

    async def _abandon(self, session, run: Run) -> None:
        """The client left before the end: a queued run never starts, a running one is
        interrupted (real managers call interrupt_session)."""
        if run.state == RUN_QUEUED:
            run.finish(protocol.EXIT_SESSION_VANISHED)  # the session's worker skips finished runs
        elif session.active is run:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.interrupt(), 5)

    async def _send(self, frame: dict) -> None:
        await self.write_message(jsonio.dumps(frame).decode("utf-8"))  # a text frame
