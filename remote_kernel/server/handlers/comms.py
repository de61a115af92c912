"""Our ``jupyter-comms`` extension's calls (docs/PROTOCOL.md#our-extensions-jupyter-comms):
``GET {P}/{id}/events`` (the session's event stream, a resumable long poll),
``POST {P}/{id}/comm`` (a frontend's comm message to the inner kernel) and
``POST {P}/{id}/comm_info``."""

from __future__ import annotations

import math
import re

from remote_kernel.server import comms
from remote_kernel.server.base import BaseHandler
from remote_kernel.server.errors import APIProblem, bad_params, session_not_found

_DIGITS = re.compile(r"[0-9]{1,18}")


def _kernel(session):
    """The session's inner Jupyter kernel (every session has one today)."""
    kernel = getattr(session, "kernel", None)
    if kernel is None or not hasattr(kernel, "events"):
        raise bad_params("this session has no Jupyter kernel, hence no comms")
    return kernel


class EventsHandler(BaseHandler):
    def _argument(self, name: str) -> str | None:
        values = self.get_query_arguments(name)
        if len(values) > 1:
            raise bad_params(f"'{name}' given more than once")
        return values[0] if values else None

    def _cursor(self) -> int:
        value = self._argument("cursor")
        if value is None:
            return 0
        if not _DIGITS.fullmatch(value):
            raise bad_params("'cursor' must be a non-negative integer")
        return int(value)

    def _wait(self) -> float:
        value = self._argument("wait")
        if value is None:
            return comms.DEFAULT_WAIT
        try:
            wait = float(value)
        except ValueError:
            wait = math.nan
        if not 0 <= wait <= comms.MAX_WAIT:  # NaN fails too
            raise bad_params(f"'wait' must be a number of seconds from 0 to {comms.MAX_WAIT:g}")
        return wait

    async def get(self, _family: str, ident: str) -> None:
        cursor, wait = self._cursor(), self._wait()
        # a dead session's last events stay fetchable; listening is no activity (idle reaping)
        session = self.session(ident, allow_dead=True, activity=False)
        log = _kernel(session).events
        log.enable()
        log.check_cursor(cursor)
        answer = await log.fetch(cursor, wait)
        if answer is None:  # destroyed meanwhile
            raise session_not_found(ident, self.family())
        if self.request.connection.stream.closed():
            return  # the client left: nothing was freed, its retry gets the same events
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(answer)


class CommHandler(BaseHandler):
    async def post(self, _family: str, ident: str) -> None:
        body = self.json_body()
        msg_type, msg_id, content, metadata, buffers = comms.frontend_message(body)
        wait = body.get("wait", False)
        if not isinstance(wait, bool):
            raise bad_params("'wait' must be a boolean")
        kernel = _kernel(self.session(ident))
        kernel.events.enable()  # what the comm's handler prints arrives as events
        if not wait:
            kernel.send_shell(msg_type, content, metadata=metadata, buffers=buffers, msg_id=msg_id)
            self.set_status(204)
            self.finish()
            return
        # answered once the kernel is idle after it: the client can then hold its own idle until
        # it has the handler's events (a frontend drops an Output widget's capture at idle)
        cursor, idle = await kernel.send_shell_until_idle(msg_type, content, metadata, buffers, msg_id,
                                                          comms.COMM_IDLE_TIMEOUT)
        self.write_json({"cursor": cursor, "idle": idle})


class CommInfoHandler(BaseHandler):
    async def post(self, _family: str, ident: str) -> None:
        body = self.json_body(required=False)
        target_name = body.get("target_name")
        if target_name is not None and not isinstance(target_name, str):
            raise bad_params("'target_name' must be a string or null")
        session = self.session(ident)
        kwargs = {} if target_name is None else {"target_name": target_name}
        reply = await session.shell_request("comm_info", **kwargs)
        if reply is None:
            raise APIProblem(504, "kernel-execution-failed", "The kernel did not answer in time.",
                             "no comm_info_reply from the session's kernel (a cell still running holds "
                             "its requests); try again later")
        comms_found = reply.get("comms")
        self.write_json({"status": reply.get("status", "ok"),
                         "comms": comms_found if isinstance(comms_found, dict) else {}})

