"""Session lifecycle: create/get-or-create, info, destroy, restart, interrupt, logs."""

from __future__ import annotations

from remote_kernel.server import startup
from remote_kernel.server.base import BaseHandler
from remote_kernel.server.errors import APIProblem, bad_params
from remote_kernel.server.handlers import execute


def _environ(config: object) -> dict:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise bad_params("'config' must be an object")
    environ = config.get("environ") or {}
    if not isinstance(environ, dict):
        raise bad_params("'config.environ' must be an object of strings")
    for key, value in environ.items():
        if not isinstance(value, str) or not key or "=" in key or "\x00" in key or "\x00" in value:
            raise bad_params("'config.environ' must map variable names to strings (no NUL, no '=')")
    return dict(environ)


async def create_session(handler: BaseHandler) -> None:
    body = handler.json_body()
    name = body.get("name", body.get("clientSessionToken", body.get("sessionName")))
    image = body.get("image") or body.get("lang")
    if not isinstance(name, str):
        raise bad_params("'name' (or 'clientSessionToken') must be a string")
    if not isinstance(image, str) or not image or "\x00" in image or len(image) > 512:
        raise bad_params("'image' (or 'lang') must be a non-empty string")
    reuse = body.get("reuseIfExists", True)
    if not isinstance(reuse, bool):
        raise bad_params("'reuseIfExists' must be a boolean")
    enqueue_only = body.get("enqueueOnly")
    if enqueue_only is not None and not isinstance(enqueue_only, bool):
        raise bad_params("'enqueueOnly' must be a boolean")
    environ = _environ(body.get("config"))
    session, created = await handler.state.manager.create(
        handler.access_key, name, image, environ, reuse, handler.family(), enqueue_only=bool(enqueue_only))
    if handler.family() == "/kernel":  # v4 answers with the name as kernelId
        answer = {"kernelId": session.name, "status": session.status, "servicePorts": [], "created": created}
    else:
        answer = {"sessionId": session.id, "sessionName": session.name, "status": session.status,
                  "servicePorts": [], "created": created}
    handler.write_json(answer, 201 if created else 200)


class CreateHandler(BaseHandler):
    async def post(self, _family: str) -> None:
        await create_session(self)


class SessionHandler(BaseHandler):
    def get(self, _family: str, ident: str) -> None:
        session = self.session(ident, starting=True)  # a session starting says how far it is
        info = session.info()
        if self.state.config.extensions:  # our session-list extension: where a new bridge goes on
            info["activeRun"] = session.active_run_report()
        self.write_json(info)

    async def delete(self, _family: str, ident: str) -> None:
        session = self.session(ident, allow_dead=True, starting=True)  # a start stops there
        if self.state.config.slow_start and session.status in startup.UNDESTROYABLE and \
                self.get_query_argument("forced", "false").lower() != "true":
            # as a real manager (23.9): a session being scheduled or prepared is destroyed only
            # when forced
            raise APIProblem(403, "generic-forbidden", "Forbidden.",
                             f"Cannot destroy sessions in {session.status.lower()} status (use forced)")
        stats = {"numQueriesExecuted": session.num_queries}
        await self.state.manager.destroy(session)
        self.write_json({"stats": stats})

    async def patch(self, _family: str, ident: str) -> None:
        session = self.session(ident)
        await session.restart()
        self.set_status(204)
        self.finish()

    async def post(self, _family: str, ident: str) -> None:
        if ident in ("create", "_") and "mode" not in self.json_body():
            await create_session(self)  # older clients: POST {P}/create
            return
        await execute.execute(self, ident)


class ListHandler(BaseHandler):
    """``GET /sessions`` (our session-list extension): this key's sessions, for a bridge that
    lists or attaches to the ones it kept."""

    def get(self) -> None:
        mine = [s for s in self.state.manager.sessions.values() if s.owner == self.access_key]
        self.write_json({"sessions": [{**s.info(), "activeRun": s.active_run_report()} for s in mine]})


class InterruptHandler(BaseHandler):
    async def post(self, _family: str, ident: str) -> None:
        await self.session(ident).interrupt()
        self.set_status(204)
        self.finish()


class LogsHandler(BaseHandler):
    def get(self, _family: str, ident: str) -> None:
        self.write_json({"result": {"logs": self.session(ident, allow_dead=True, starting=True).read_logs()}})
