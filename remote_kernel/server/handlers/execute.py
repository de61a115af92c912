"""The execute loop (docs/PROTOCOL.md#the-execute-loop, with our extensions:
docs/PROTOCOL.md#our-extensions) and the inner-kernel forwards: complete, inspect, is_complete.

Unknown or foreign runIds on ``continue``/``input`` answer 400 ``invalid-api-params``
("unknown run"): a 404 would read as "session gone" to clients, which then recreate it.
"""

from __future__ import annotations

from remote_kernel import protocol
from remote_kernel.server import comms
from remote_kernel.server.base import BaseHandler
from remote_kernel.server.errors import bad_params
from remote_kernel.server.handlers.root import classic_options
from remote_kernel.server.runs import Run, new_run_id, valid_run_id

_MODES = (protocol.MODE_QUERY, protocol.MODE_BATCH, protocol.MODE_CONTINUE, protocol.MODE_INPUT,
          protocol.MODE_COMPLETE)


def code_of(body: dict) -> str:
    code = body.get("code")
    if code is None:
        return ""
    if not isinstance(code, str):
        raise bad_params("'code' must be a string")
    return code


def options_of(body: dict) -> dict:
    options = body.get("options")
    if options is None:
        return {}  # current official clients omit it in query mode
    if not isinstance(options, dict):
        raise bad_params("'options' must be an object")
    return options


def _cursor(options: dict) -> int | None:
    cursor = options.get("cursor")
    if cursor is None:
        return None
    if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
        raise bad_params("'options.cursor' must be a non-negative integer")
    return cursor


def new_run(handler: BaseHandler, mode: str, run_id: str | None, code: str, options: dict) -> Run:
    jupyter = options.get("outputs") == "jupyter"
    allow_stdin = options.get("allowStdin", True)
    if not isinstance(allow_stdin, bool):
        raise bad_params("'options.allowStdin' must be a boolean")
    if mode == protocol.MODE_QUERY:
        comms.check_query_options(options)  # our jupyter-comms extension: msgId, comms
    if mode == protocol.MODE_BATCH:
        for step in ("clean", "build", "exec"):
            if not isinstance(options.get(step), (str, type(None))):
                raise bad_params(f"'options.{step}' must be a string or null")
    return Run(run_id or new_run_id(), mode, code, options, jupyter=jupyter,
               allow_stdin=allow_stdin, max_buffer=handler.state.config.max_run_buffer)


async def execute(handler: BaseHandler, ident: str) -> None:
    body = handler.json_body()
    mode = body.get("mode")
    if mode == "continued":  # the SDK's own docs send it
        mode = protocol.MODE_CONTINUE
    if not isinstance(mode, str) or mode not in _MODES:
        raise bad_params(f"unknown mode {mode!r}; expected one of {', '.join(_MODES)}")
    code = code_of(body)
    run_id = body.get("runId")
    if run_id is not None and not valid_run_id(run_id):
        raise bad_params("'runId' must be null or up to 64 characters of letters, digits, '_' and '-'")
    options = options_of(body)
    classic = not handler.state.config.extensions
    if classic:  # --no-extensions
        options = classic_options(options)
    follow_up = mode in (protocol.MODE_CONTINUE, protocol.MODE_INPUT)
    session = handler.session(ident, allow_dead=follow_up)

    if mode == protocol.MODE_COMPLETE:
        handler.write_json({"result": await completions(session, code, options)})
        return
    cursor = _cursor(options)
    if follow_up:
        if not run_id:
            raise bad_params("continuation requires explicit run ID")
        run = session.runs.get(run_id)
        if run is None:
            raise bad_params(f"unknown run {run_id!r} (finished long ago, or of another session)",
                             title="Unknown run.")
        if mode == protocol.MODE_INPUT:
            await session.send_input(run, code)  # a run no longer waiting: answered like continue
    else:
        run = session.runs.get(run_id) if run_id else None
        if run is not None:
            cursor = 0  # a repeated query never runs the code twice
        else:
            run = new_run(handler, mode, run_id, code, options)
            session.submit(run)
            cursor = None
    run.acknowledge(cursor)  # before waiting: a client that caught up gets dropped output's tail at once
    config = handler.state.config
    await run.wait(config.hold, config.coalesce, config.text_coalesce)
    session.touch()
    if handler.request.connection.stream.closed():
        return  # the client left: keep the records for its retry
    result = run.result(cursor)
    if classic:
        del result["cursor"]
    handler.write_json({"result": result})


async def completions(session, code: str, options: dict) -> dict:
    cursor_pos = options.get("cursor_pos", len(code))
    if not isinstance(cursor_pos, int) or isinstance(cursor_pos, bool) or not 0 <= cursor_pos <= len(code):
        raise bad_params("'options.cursor_pos' must be an integer within the code")
    reply = await session.shell_request("complete", code=code, cursor_pos=cursor_pos)
    if options.get("jupyter"):
        return reply or {"status": "ok", "matches": [], "cursor_start": cursor_pos,
                         "cursor_end": cursor_pos, "metadata": {}}
    return {"status": "finished", "completions": list((reply or {}).get("matches") or [])}


class CompleteHandler(BaseHandler):
    async def post(self, _family: str, ident: str) -> None:
        body = self.json_body()
        code = body.get("code", "")
        if not isinstance(code, str):
            raise bad_params("'code' must be a string")
        session = self.session(ident)
        options = options_of(body) if self.state.config.extensions else classic_options(options_of(body))
        self.write_json({"result": await completions(session, code, options)})


class _ForwardHandler(BaseHandler):
    kind = ""

    async def post(self, _family: str, ident: str) -> None:
        body = self.json_body()
        code = body.get("code", "")
        if not isinstance(code, str):
            raise bad_params("'code' must be a string")
        kwargs = {"code": code}
        if self.kind == "inspect":
            cursor_pos = body.get("cursor_pos", len(code))
            detail = body.get("detail_level", 0)
            if not isinstance(cursor_pos, int) or isinstance(cursor_pos, bool) or not 0 <= cursor_pos <= len(code):
                raise bad_params("'cursor_pos' must be an integer within the code")
            if detail not in (0, 1):
                raise bad_params("'detail_level' must be 0 or 1")
            kwargs.update(cursor_pos=cursor_pos, detail_level=detail)
        session = self.session(ident)
        reply = await session.shell_request(self.kind, **kwargs)
        if reply is None:
            reply = {"status": "unknown"} if self.kind == "is_complete" else \
                {"status": "ok", "found": False, "data": {}, "metadata": {}}
        self.write_json({"result": reply})


class InspectHandler(_ForwardHandler):
    kind = "inspect"


class IsCompleteHandler(_ForwardHandler):
    kind = "is_complete"
