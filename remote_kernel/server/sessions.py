"""``SessionManager``: the server's sessions — who owns which (the access key that created it),
their names and folders, quotas, creation (cold, or by adopting a spare of the ``WarmPool``),
destruction, and the cleanup of dead and idle ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid

from remote_kernel import protocol
from remote_kernel.server import images, startup, warm
from remote_kernel.server.config import ServerConfig
from remote_kernel.server.errors import APIProblem, bad_params, session_not_found
from remote_kernel.server.session import Session
from remote_kernel.server.tasks import cancel_all

log = logging.getLogger("remote_kernel.server")

_NAME_RE = re.compile(protocol.SESSION_NAME_PATTERN, re.ASCII)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not (protocol.SESSION_NAME_MIN <= len(name) <= protocol.SESSION_NAME_MAX) \
            or not _NAME_RE.fullmatch(name):
        raise bad_params("session names are 4-64 characters of letters, digits, '_', '.', '-', "
                         "starting and ending with a letter, digit or '_'")
    return name


def _creation_failed(kernel_name: str) -> APIProblem:
    return APIProblem(500, "kernel-creation-failed", "Kernel creation failed.",
                      f"the {kernel_name!r} kernel did not start")


def _short_temp_dir() -> str:
    """The temporary directory, or /tmp when its path is too long to hold socket names."""
    base = tempfile.gettempdir()
    if len(base) > 40 and os.access("/tmp", os.W_OK):
        return "/tmp"
    return base


class SessionManager:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.kernel_specs = images.ServerKernelSpecManager()
        self._own_root = config.root is None and config.session_cwd is None
        # a temporary root only where sessions get folders under it (never with --session-cwd);
        # what the server makes for itself, it removes when it stops
        self.root = config.root or (tempfile.mkdtemp(prefix="rk-server-") if self._own_root else None)
        if self.root is not None:
            os.makedirs(self.root, exist_ok=True)
        # also the inner kernels' ipc sockets: a path of a long TMPDIR would pass the ~107-byte
        # limit of a socket's name and no kernel would start
        self.logs_dir = tempfile.mkdtemp(prefix="rk-server-logs-", dir=_short_temp_dir())
        self.sessions: dict[str, Session] = {}
        self._unstopped: set[Session] = set()  # started and not yet fully stopped (for kill_all)
        self._reaper: asyncio.Task | None = None
        self._cleanups: set[asyncio.Task] = set()
        self._starts: dict[Session, asyncio.Task] = {}  # sessions on their way to RUNNING
        # --slow-start: every session walks its start (startup.py), none adopts a spare
        self.warm = warm.WarmPool(0 if config.slow_start else config.warm_kernels, spawn=self._spawn_spare,
                                   stop=self._drop, is_quiet=self.quiet_for)

    def quiet_for(self, seconds: float) -> bool:
        """No session runs a cell, and none was asked to for ``seconds``."""
        now = time.monotonic()
        return all(s.active is None and now - s.last_used >= seconds for s in self.sessions.values())

    def start(self) -> None:
        if self.config.idle_timeout > 0:
            self._reaper = asyncio.create_task(self._reap())
        self.warm.start()

    # -- lookups -----------------------------------------------------------------------------

    def find(self, owner: str, ident: str, family: str = "/session", allow_dead: bool = False,
             activity: bool = True, starting: bool = False) -> Session:
        """A session of ``owner`` by name or id; another owner's session is 'not found'.
        ``activity``: the call counts as use (the idle reaper spares the session); listening
        to its events does not, or a connected frontend would keep every session alive.
        A session not running yet (or whose start failed) is found only for ``starting``
        calls (its information, destroy, logs); any other is ``startup.not_running``."""
        for session in self.sessions.values():
            if session.owner == owner and ident in (session.name, session.id):
                if session.status == protocol.SESSION_RUNNING or (
                        allow_dead and session.status == protocol.SESSION_DEAD) or (
                        starting and session.status in startup.STARTING | {startup.ERROR}):
                    if activity:
                        session.touch()
                    return session
                if session.status in startup.STARTING | {startup.ERROR}:
                    raise startup.not_running(session)
        raise session_not_found(ident, family)

    def _by_name(self, owner: str, name: str) -> Session | None:
        for session in self.sessions.values():
            if session.owner == owner and session.name == name:
                return session
        return None

    # -- create / destroy --------------------------------------------------------------------

    async def create(self, owner: str, name: str, image: str, environ: dict, reuse: bool,
                     family: str = "/session", enqueue_only: bool = False) -> tuple[Session, bool]:
        """The session, and whether it is new.  It is RUNNING, except under ``--slow-start``
        for ``enqueue_only`` and for the reuse of a session still starting: those answer at
        once, with the session as it is, as a real manager does."""
        check_name(name)
        exists_slug = "kernel-already-exists" if family == "/kernel" else "session-already-exists"
        existing = self._by_name(owner, name)
        if existing is not None and existing.status in (protocol.SESSION_DEAD, protocol.SESSION_TERMINATED,
                                                        startup.ERROR):
            await self.destroy(existing)
            existing = None
        if existing is not None:
            if not reuse or existing.image != image:
                raise APIProblem(400, exists_slug, "The session already exists.",
                                 f"session {name!r} exists" + ("" if reuse else " and reuseIfExists is false")
                                 + ("" if existing.image == image else f" with another image ({existing.image!r})"))
            if self.config.slow_start and existing.status in startup.STARTING:
                existing.touch()
                return existing, False
            await asyncio.shield(existing.ready)  # a concurrent create of the same name
            if existing.status != protocol.SESSION_RUNNING:
                raise session_not_found(name, family)
            existing.touch()
            return existing, False
        kernel_name, language = images.resolve(image, self.kernel_specs)
        mine = [s for s in self.sessions.values() if s.owner == owner]
        if len(mine) >= self.config.max_sessions_per_key or len(self.sessions) >= self.config.max_sessions:
            raise APIProblem(412, "quota-exceeded", "You have reached your resource limit.",
                             f"at most {min(self.config.max_sessions_per_key, self.config.max_sessions)} sessions")

        def claim(spare: Session) -> None:
            cwd, owns = self._workdir(name, move_from=spare.cwd if spare.owns_cwd else None)
            spare.adopt(owner, name, image, cwd, owns)
            self.sessions[spare.id] = spare

        try:
            spare = await self.warm.adopt(kernel_name, environ, claim)
        except APIProblem:
            raise _creation_failed(kernel_name) from None
        if spare is not None:
            log.info("session %s started (%s, a warm %s kernel)", name, spare.id, kernel_name)
            return spare, True
        cwd, owns = self._workdir(name)
        session = self._new_session(owner, name, image, kernel_name, language, environ, cwd=cwd, owns_cwd=owns)
        self.sessions[session.id] = session
        # a task of its own: a DELETE meanwhile cancels it (_drop), and a create whose client
        # left does not
        self._starts[session] = asyncio.create_task(self._start(session, kernel_name))
        if self.config.slow_start and enqueue_only:
            return session, True
        await asyncio.shield(session.ready)
        if session.status != protocol.SESSION_RUNNING:  # it failed, or was destroyed meanwhile
            raise _creation_failed(kernel_name)
        return session, True

    async def _start(self, session: Session, kernel_name: str) -> None:
        """Start a new session's kernel, after its walk through the statuses under --slow-start.
        A failed start drops the session, or under --slow-start leaves it ERROR for a while
        (a client polling its status learns why) before it is forgotten."""
        try:
            if self.config.slow_start:
                await startup.walk(session, self.config.slow_start)
            await session.start()
            session.status_info = ""
            log.info("session %s started (%s, kernelspec %s)", session.name, session.id, kernel_name)
        except Exception as exc:  # noqa: BLE001 - any failure is the session's start failing
            session.log.warning("kernel failed to start: %s", type(exc).__name__)
            self._starts.pop(session, None)  # no DELETE cancels the cleanup
            if not self.config.slow_start:
                await self._drop(session)
                return
            # ERROR at once (a GET meanwhile must not find it gone); what the start left of the
            # kernel stops now, the rest when the session is destroyed (DELETE, reuse, cleanup)
            session.status, session.status_info = startup.ERROR, f"the {kernel_name!r} kernel did not start"
            with contextlib.suppress(Exception):
                await session.kernel.stop(grace=0)
            self._schedule_cleanup(session)
        finally:
            self._starts.pop(session, None)
            if not session.ready.done():
                session.ready.set_result(None)

    def _new_session(self, owner: str, name: str, image: str, kernel_name: str, language: str, environ: dict,
                     cwd: str, owns_cwd: bool) -> Session:
        """A session not started yet, which ``kill_all`` covers from now on."""
        session = Session(owner, name, image, kernel_name, language, cwd, owns_cwd, environ, config=self.config,
                          kernel_specs=self.kernel_specs, logs_dir=self.logs_dir, on_death=self._schedule_cleanup)
        self._unstopped.add(session)
        return session

    async def _spawn_spare(self) -> Session:
        """A started spare for the warm pool: a session of nobody's, in a folder of its own."""
        if self._shared_cwd():
            cwd, owns_cwd = self.config.session_cwd, False
        else:  # a fresh root/.spare-* that adoption renames
            cwd, owns_cwd = tempfile.mkdtemp(prefix=".spare-", dir=self.root), True
        spare = self._new_session(owner="", name="spare", image=warm.SPARE_IMAGE, kernel_name=images.OWN_PYTHON,
                                  language="python", environ={}, cwd=cwd, owns_cwd=owns_cwd)
        spare.ready.set_result(None)  # nobody waits for a spare to be created
        try:
            await spare.start()
        except BaseException:
            with contextlib.suppress(BaseException):
                await self._drop(spare)
            raise
        return spare

    def _shared_cwd(self) -> str | None:
        if self.config.session_cwd:
            os.makedirs(self.config.session_cwd, exist_ok=True)
        return self.config.session_cwd

    def _workdir(self, name: str, move_from: str | None = None) -> tuple[str, bool]:
        """The session's folder: the shared ``--session-cwd``, or root/<name> (made new, or
        ``move_from`` renamed to it: a running kernel's working directory follows a rename)."""
        if self._shared_cwd():
            return self.config.session_cwd, False
        path = os.path.join(self.root, name)
        while os.path.lexists(path):  # the same name under another key
            path = os.path.join(self.root, f"{name}-{uuid.uuid4().hex[:8]}")
        if move_from is not None:
            os.rename(move_from, path)
        else:
            os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # private whatever the umask, or the root's sharing (--root)
        return path, True

    async def destroy(self, session: Session) -> None:
        await self._drop(session)
        log.info("session %s destroyed", session.name)

    async def _drop(self, session: Session) -> None:
        """Forget and stop a session: a destroyed one, a failed start, a spare."""
        self.sessions.pop(session.id, None)
        start = self._starts.pop(session, None)
        if start is not None:  # still starting: it never will
            await cancel_all([start])
        await session.stop()
        self._unstopped.discard(session)
        if not session.ready.done():
            session.ready.set_result(None)

    def _schedule_cleanup(self, session: Session) -> None:
        """A dead session: stop what is left of it now, forget it after the run TTL (its last
        run's result stays fetchable meanwhile)."""
        async def cleanup():
            await asyncio.sleep(self.config.finished_run_ttl)
            if self.sessions.get(session.id) is session:
                await self.destroy(session)
        task = asyncio.create_task(cleanup())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        session.kernel.kill_group()

    async def _reap(self) -> None:
        period = max(0.5, min(30.0, self.config.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if any(not run.finished for run in session.runs.values()):
                    session.touch()  # a cell or batch running (or queued) is activity
                if session.status not in startup.STARTING and now - session.last_used > self.config.idle_timeout:
                    log.info("session %s idle for %.0f s: destroying", session.name, now - session.last_used)
                    with contextlib.suppress(Exception):
                        await self.destroy(session)
                else:
                    session.purge_runs()

    async def shutdown(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for task in list(self._cleanups):
            task.cancel()
        await self.warm.shutdown()
        await asyncio.gather(*(self.destroy(s) for s in list(self.sessions.values())), return_exceptions=True)
        self.kill_all()  # sessions still starting, or whose stop failed
        self.remove_own_folders()

    def remove_own_folders(self) -> None:
        """The temporary folders the server made for itself (logs, the root of session folders)."""
        shutil.rmtree(self.logs_dir, ignore_errors=True)
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def kill_all(self) -> None:
        """Last resort on the way out: SIGKILL every kernel process group not yet stopped."""
        for session in list(self._unstopped):
            session.kernel.kill()
