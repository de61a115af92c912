"""``SessionManager`` / ``Session``: one Jupyter kernel per session (jupyter_client, async), its
working directory, owner (the access key that created it), FIFO run queue, the readers that
route the inner kernel's messages to runs, quotas and idle reaping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid

from jupyter_client.manager import AsyncKernelManager

from remote_kernel import protocol
from remote_kernel.server import images, records
from remote_kernel.server.batch import BatchRunner
from remote_kernel.server.config import ServerConfig
from remote_kernel.server.errors import APIProblem, bad_params, session_not_found
from remote_kernel.server.runs import RUN_WAITING_INPUT, Run
from remote_kernel.server.warm import WarmPool

log = logging.getLogger("remote_kernel.server")

_NAME_RE = re.compile(protocol.SESSION_NAME_PATTERN, re.ASCII)
# never hand the server's own credentials to user code
_SECRET_ENV = ("BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY", "SORNA_ACCESS_KEY", "SORNA_SECRET_KEY")
IDLE_GRACE = 2.0  # seconds a run waits for its idle status once the reply is in
LIVENESS_PERIOD = 0.2  # how often a running cell checks that its kernel is still alive
SHELL_TIMEOUT = 10.0
KERNEL_GRACE = 3.0  # seconds a kernel gets to act on a shutdown request before it is killed
SPARE_CHECK_TIMEOUT = 3.0  # an adopted spare must answer kernel_info within this


async def _cancel_all(tasks: list[asyncio.Task]) -> None:
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


def check_name(name: object) -> str:
    if not isinstance(name, str) or not (protocol.SESSION_NAME_MIN <= len(name) <= protocol.SESSION_NAME_MAX) \
            or not _NAME_RE.match(name):
        raise bad_params("session names are 4-64 characters of letters, digits, '_', '.', '-', "
                         "starting and ending with a letter, digit or '_'")
    return name


class Session:
    def __init__(self, manager: "SessionManager", owner: str, name: str, image: str,
                 kernel_name: str, language: str, cwd: str, owns_cwd: bool, environ: dict):
        self.manager = manager
        self.config = manager.config
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
        self.num_queries = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.km: AsyncKernelManager | None = None
        self.kc = None
        self.pgid: int | None = None
        self.log_path = os.path.join(manager.logs_dir, self.id + ".log")
        self.runs: dict[str, Run] = {}
        self.active: Run | None = None
        self._queue: asyncio.Queue[Run] = asyncio.Queue()
        self._msg_runs: dict[str, Run] = {}
        self._replies: dict[str, asyncio.Future] = {}
        self._iopub_seen: dict[str, asyncio.Event] = {}
        self._batch: BatchRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------------------------

    def kernel_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
        # the server's interpreter first, so batch "python" and the kernel agree
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(self.environ)
        return env

    async def start(self) -> None:
        # IPC sockets in our private directory, not TCP: ports picked then released by
        # jupyter_client race with every other kernel starting on the machine ("Address
        # already in use"), and the inner kernel is always local to the server anyway.
        self.km = AsyncKernelManager(kernel_name=self.kernel_name, transport="ipc",
                                     ip=os.path.join(self.manager.logs_dir, self.id),
                                     kernel_spec_manager=self.manager.kernel_specs)
        # kept open for the session's life: a restart launches the kernel again with it
        self._log_file = open(self.log_path, "ab")
        await self.km.start_kernel(cwd=self.cwd, env=self.kernel_env(), stdout=self._log_file,
                                   stderr=self._log_file)
        with contextlib.suppress(OSError, AttributeError, TypeError):
            self.pgid = os.getpgid(self.km.provisioner.pid)
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=self.config.kernel_start_timeout)
        self._tasks = [asyncio.create_task(coro) for coro in
                       (self._read_iopub(), self._read_shell(), self._read_stdin(), self._worker())]
        self.status = protocol.SESSION_RUNNING

    async def stop(self, remove_cwd: bool = True, grace: float = KERNEL_GRACE) -> None:
        """Stop the kernel: every run gets its final result first, then a shutdown request with
        ``grace`` seconds to act on it, then SIGKILL to its process group (its children too).
        Bounded whatever the cell does (sleeping, waiting for input, ignoring signals)."""
        if self.status == protocol.SESSION_TERMINATED:
            return
        self.status = protocol.SESSION_TERMINATED
        cell_running = self.active is not None and self._batch is None
        self._fail_runs(protocol.EXIT_SESSION_VANISHED, "the session was destroyed")
        if self._batch is not None:
            self._batch.kill()
        await _cancel_all(self._tasks)
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
        if self.km is not None:
            await self._halt_kernel(grace, interrupt_first=cell_running)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.km.cleanup_resources(), 2)
        if remove_cwd and self.owns_cwd:
            shutil.rmtree(self.cwd, ignore_errors=True)
        if self._log_file is not None:
            self._log_file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    async def _halt_kernel(self, grace: float, interrupt_first: bool = False) -> None:
        """Ask the kernel to shut down, wait at most ``grace`` s, then kill its process group
        and reap it.  (Not km.shutdown_kernel: its waits are unbounded in practice when the
        kernel is blocked, and cancelling it mid-way leaves the process running.)

        A kernel busy with a cell acts on the shutdown request only once the cell ends, so it
        is interrupted first (``interrupt_first``): a destroyed session whose cell sleeps then
        exits in a fraction of a second instead of being killed after ``grace``."""
        km = self.km
        process = getattr(km.provisioner, "process", None) if km.provisioner is not None else None
        if grace > 0 and process is not None and process.poll() is None:
            if interrupt_first:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(km.interrupt_kernel(), 1)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(km.request_shutdown(), 1)
            deadline = time.monotonic() + grace
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # a DELETE (and a notebook's shutdown) waits for this
        # the process group also holds whatever the cell started; it must not outlive us
        self._kill_group()
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
            deadline = time.monotonic() + 3
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

    def _kill_group(self) -> None:
        if self.pgid is not None and self.pgid != os.getpgid(0):
            with contextlib.suppress(OSError):
                os.killpg(self.pgid, signal.SIGKILL)

    async def restart(self) -> None:
        self._fail_runs(protocol.EXIT_SESSION_VANISHED, "the session was restarted")
        if self._batch is not None:
            self._batch.kill()
        self._msg_runs.clear()
        # a forced restart: kill the old kernel and everything it started ourselves, so that
        # restart_kernel finds it gone and only has to launch the new one
        await self._halt_kernel(grace=0)
        try:
            # cwd: an adopted spare's kernel was launched in the folder that became this one
            await asyncio.wait_for(self.km.restart_kernel(now=True, cwd=self.cwd), self.config.kernel_start_timeout)
        except Exception as exc:  # noqa: BLE001
            log.warning("session %s: restart failed: %s", self.name, type(exc).__name__)
            raise APIProblem(500, "kernel-restart-failed", "Kernel restart failed.") from None
        with contextlib.suppress(OSError, AttributeError, TypeError):
            self.pgid = os.getpgid(self.km.provisioner.pid)
        # (not kc.wait_for_ready: our shell reader owns the shell channel now)
        deadline = time.monotonic() + self.config.kernel_start_timeout
        while await self.shell_request("kernel_info", timeout=1.0) is None:
            if time.monotonic() > deadline or not await self.km.is_alive():
                raise APIProblem(500, "kernel-restart-failed", "Kernel restart failed.",
                               "the kernel did not come back")
        # iopub is a SUB socket that reconnects in its own time: until it has, a cell's output
        # and idle status would be lost, so wait until it carries a message of ours
        while not await self._iopub_connected(timeout=0.5):
            if time.monotonic() > deadline:
                raise APIProblem(500, "kernel-restart-failed", "Kernel restart failed.",
                               "the kernel's output channel did not come back")

    async def _iopub_connected(self, timeout: float) -> bool:
        msg_id = self.kc.kernel_info()
        seen = self._iopub_seen[msg_id] = asyncio.Event()
        try:
            await asyncio.wait_for(seen.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._iopub_seen.pop(msg_id, None)

    def _fail_runs(self, exit_code: int, why: str) -> None:
        for run in list(self.runs.values()):
            if not run.finished:
                run.add(records.kernel_died_records(run.jupyter, why))
                run.finish(exit_code)

    def _died(self) -> None:
        code = None
        with contextlib.suppress(Exception):
            code = self.km.provisioner.process.poll()
        self.status = protocol.SESSION_DEAD
        self._fail_runs(protocol.EXIT_SESSION_VANISHED, f"exit code {code}" if code is not None else "it exited")
        log.warning("session %s: kernel died (exit code %s)", self.name, code)
        self.manager.schedule_cleanup(self)

    # -- runs --------------------------------------------------------------------------------

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def is_running(self) -> bool:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return self.status == protocol.SESSION_RUNNING and process is not None and process.poll() is None

    def adopt(self, owner: str, name: str, image: str, cwd: str, owns_cwd: bool) -> None:
        """A spare (warm.py) becomes this owner's session; its kernel is already running."""
        self.owner, self.name, self.image = owner, name, image
        self.cwd, self.owns_cwd = cwd, owns_cwd
        self.created_at = time.time()
        self.touch()

    def submit(self, run: Run) -> None:
        self.runs[run.run_id] = run
        self._queue.put_nowait(run)

    def purge_runs(self) -> None:
        """Finished runs stay fetchable until the next run starts or their TTL passes."""
        now = time.monotonic()
        for run_id, run in list(self.runs.items()):
            if run.finished and run is not self.active and (
                    self.active is not None or now - run.finished_at > self.config.finished_run_ttl):
                del self.runs[run_id]

    async def _worker(self) -> None:
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
                    self._batch = BatchRunner(run, self.cwd, self.kernel_env(), self.language)
                    await self._batch.execute()
                else:
                    await self._execute(run)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one run's failure must not stop the session
                log.exception("session %s: run failed", self.name)
                run.add([["stderr", f"[remote-kernel] internal error: {type(exc).__name__}\n"]])
                run.finish(1)
            finally:
                self._batch = None
                self.active = None

    async def _execute(self, run: Run) -> None:
        msg_id = self.kc.execute(run.code, silent=False, store_history=True,
                                 allow_stdin=run.allow_stdin, stop_on_error=False)
        run.msg_id = msg_id
        self._msg_runs[msg_id] = run
        try:
            while not run.inner_done.is_set():
                try:
                    await asyncio.wait_for(run.inner_done.wait(), LIVENESS_PERIOD)
                except asyncio.TimeoutError:
                    if not await self.km.is_alive():
                        self._died()
                        return
            if not run.finished:
                run.finish(0 if run.reply_status == "ok" and not run.errored else 1)
        finally:
            self._msg_runs.pop(msg_id, None)

    def _finish_without_idle(self, run: Run) -> None:
        if not run.finished:
            log.debug("session %s: no idle status after the reply; finishing the run", self.name)
            run.idle_seen = True
            self._check_done(run)

    def _check_done(self, run: Run) -> None:
        # finish right here (not in the worker) so the waiting request wakes one hop sooner
        if run.reply_status is not None and run.idle_seen:
            run.finish(0 if run.reply_status == "ok" and not run.errored else 1)

    async def send_input(self, run: Run, text: str) -> None:
        if run.state == RUN_WAITING_INPUT and run.mode != protocol.MODE_BATCH:
            run.resume()
            self.kc.input(text)

    async def interrupt(self) -> None:
        if self._batch is not None:
            self._batch.interrupt()
        elif self.active is not None and self.km is not None:
            await self.km.interrupt_kernel()

    # -- readers -----------------------------------------------------------------------------

    async def _recv(self, channel) -> dict:
        # straight from the socket: get_*_msg polls first, which costs a loop round per message
        while True:
            frames = await channel.socket.recv_multipart(copy=True)
            try:
                _idents, frames = self.kc.session.feed_identities(frames)
                return self.kc.session.deserialize(frames)
            except Exception:  # noqa: BLE001 - a malformed or unsigned message is dropped
                log.warning("session %s: dropped a malformed kernel message", self.name)

    async def _read_iopub(self) -> None:
        while True:
            msg = await self._recv(self.kc.iopub_channel)
            parent = msg.get("parent_header", {}).get("msg_id")
            run = self._msg_runs.get(parent)
            if run is None:
                if parent in self._iopub_seen:
                    self._iopub_seen[parent].set()
                continue
            msg_type = msg.get("msg_type")
            content = msg.get("content") or {}
            if msg_type == "status":
                if content.get("execution_state") == "idle":
                    run.idle_seen = True
                    self._check_done(run)
                continue
            if msg_type == "error":
                run.errored = True
            found = records.translate(msg_type, content, run.jupyter)
            if found:
                run.add(found)

    async def _read_shell(self) -> None:
        while True:
            msg = await self._recv(self.kc.shell_channel)
            parent = msg.get("parent_header", {}).get("msg_id")
            run = self._msg_runs.get(parent)
            if run is not None and msg.get("msg_type") == "execute_reply":
                run.reply_status = (msg.get("content") or {}).get("status", "error")
                self._check_done(run)
                if not run.finished:
                    # The idle status follows at once; if iopub lost it (its socket still
                    # reconnecting after a restart), the run must still end.
                    asyncio.get_running_loop().call_later(IDLE_GRACE, self._finish_without_idle, run)
                continue
            future = self._replies.pop(parent, None)
            if future is not None and not future.done():
                future.set_result(msg.get("content") or {})

    async def _read_stdin(self) -> None:
        while True:
            msg = await self._recv(self.kc.stdin_channel)
            run = self._msg_runs.get(msg.get("parent_header", {}).get("msg_id"))
            if run is None or msg.get("msg_type") != "input_request":
                continue
            prompt_records, options = records.input_prompt(msg.get("content") or {}, run.jupyter)
            run.add(prompt_records)
            run.wait_input(options)

    async def shell_request(self, kind: str, timeout: float = SHELL_TIMEOUT, **kwargs) -> dict | None:
        """complete/inspect/is_complete on the inner kernel; None when it does not answer in time
        (it answers shell requests one at a time, so a running cell delays them)."""
        msg_id = getattr(self.kc, kind)(**kwargs)
        future = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            self._replies.pop(msg_id, None)

    def info(self) -> dict:
        return {
            "sessionId": self.id, "sessionName": self.name, "kernelId": self.name,
            "image": self.image, "lang": self.image, "kernelspec": self.kernel_name,
            "status": self.status, "statusInfo": None, "age": int((time.time() - self.created_at) * 1000),
            "creationTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
            "terminationTime": None, "numQueriesExecuted": self.num_queries,
            "occupiedSlots": {}, "servicePorts": [], "tag": None,
        }

    def read_logs(self, limit: int = 256 * 1024) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - limit))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""


class SessionManager:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.kernel_specs = images.ServerKernelSpecManager()
        self._own_root = config.root is None and config.session_cwd is None
        self.root = config.root or tempfile.mkdtemp(prefix="rk-server-")
        os.makedirs(self.root, exist_ok=True)
        self.logs_dir = tempfile.mkdtemp(prefix="rk-server-logs-")
        self.sessions: dict[str, Session] = {}
        self._unstopped: set[Session] = set()  # started and not yet fully stopped (for kill_all)
        self._reaper: asyncio.Task | None = None
        self._cleanups: set[asyncio.Task] = set()
        self.warm = WarmPool(self, config.warm_kernels)

    def quiet_for(self, seconds: float) -> bool:
        """No session runs a cell, and none was asked to for ``seconds``."""
        now = time.monotonic()
        return all(s.active is None and now - s.last_used >= seconds for s in self.sessions.values())

    def start(self) -> None:
        if self.config.idle_timeout > 0:
            self._reaper = asyncio.create_task(self._reap())
        self.warm.start()

    # -- lookups -----------------------------------------------------------------------------

    def find(self, owner: str, ident: str, family: str = "/session", allow_dead: bool = False) -> Session:
        """A session of ``owner`` by name or id; another owner's session is 'not found'."""
        for session in self.sessions.values():
            if session.owner == owner and ident in (session.name, session.id):
                if session.status == protocol.SESSION_RUNNING or (
                        allow_dead and session.status == protocol.SESSION_DEAD):
                    session.touch()
                    return session
        raise session_not_found(ident, family)

    def _by_name(self, owner: str, name: str) -> Session | None:
        for session in self.sessions.values():
            if session.owner == owner and session.name == name:
                return session
        return None

    # -- create / destroy --------------------------------------------------------------------

    async def create(self, owner: str, name: str, image: str, environ: dict, reuse: bool,
                     family: str = "/session") -> tuple[Session, bool]:
        check_name(name)
        exists_slug = "kernel-already-exists" if family == "/kernel" else "session-already-exists"
        existing = self._by_name(owner, name)
        if existing is not None and existing.status in (protocol.SESSION_DEAD, protocol.SESSION_TERMINATED):
            await self.destroy(existing)
            existing = None
        if existing is not None:
            if not reuse or existing.image != image:
                raise APIProblem(400, exists_slug, "The session already exists.",
                               f"session {name!r} exists" + ("" if reuse else " and reuseIfExists is false")
                               + ("" if existing.image == image else f" with another image ({existing.image!r})"))
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
        spare = self.warm.take(kernel_name, environ)
        if spare is not None:
            cwd, owns = self._workdir(name, move_from=spare.cwd if spare.owns_cwd else None)
            spare.adopt(owner, name, image, cwd, owns)
            self.sessions[spare.id] = spare
            if await spare.shell_request("kernel_info", timeout=SPARE_CHECK_TIMEOUT) is None or not spare.is_running():
                # it died or hung while it waited: the session gets a new kernel in its folder
                log.warning("session %s: the spare kernel did not answer; starting a new one", name)
                try:
                    await spare.restart()
                except APIProblem:
                    self.sessions.pop(spare.id, None)
                    await self.stop_unregistered(spare)
                    raise APIProblem(500, "kernel-creation-failed", "Kernel creation failed.",
                                   f"the {kernel_name!r} kernel did not start") from None
            log.info("session %s started (%s, a warm %s kernel)", name, spare.id, kernel_name)
            return spare, True
        cwd, owns = self._workdir(name)
        session = self.new_session(owner, name, image, kernel_name, language, environ, cwd=cwd, owns_cwd=owns)
        self.sessions[session.id] = session
        try:
            await session.start()
        except BaseException as exc:
            log.warning("session %s: kernel failed to start: %s", name, type(exc).__name__)
            self.sessions.pop(session.id, None)
            await self.stop_unregistered(session)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise APIProblem(500, "kernel-creation-failed", "Kernel creation failed.",
                           f"the {kernel_name!r} kernel did not start") from None
        session.ready.set_result(None)
        log.info("session %s started (%s, kernelspec %s)", name, session.id, kernel_name)
        return session, True

    def new_session(self, owner: str, name: str, image: str, kernel_name: str, language: str, environ: dict,
                    cwd: str, owns_cwd: bool) -> Session:
        """A session not started yet, which ``kill_all`` covers from now on."""
        session = Session(self, owner, name, image, kernel_name, language, cwd, owns_cwd, environ)
        self._unstopped.add(session)
        return session

    async def stop_unregistered(self, session: Session) -> None:
        """Stop a session that is not (or no longer) among ``sessions``: a failed start, a spare."""
        await session.stop()
        self._unstopped.discard(session)
        if not session.ready.done():
            session.ready.set_result(None)

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
            os.makedirs(path)
        return path, True

    def spare_workdir(self) -> tuple[str, bool]:
        """A spare's folder: the shared one, or a fresh root/.spare-* that adoption renames."""
        if self._shared_cwd():
            return self.config.session_cwd, False
        return tempfile.mkdtemp(prefix=".spare-", dir=self.root), True

    async def destroy(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        await session.stop()
        self._unstopped.discard(session)
        log.info("session %s destroyed", session.name)

    def schedule_cleanup(self, session: Session) -> None:
        """A dead session: stop what is left of it now, forget it after the run TTL (its last
        run's result stays fetchable meanwhile)."""
        async def cleanup():
            await asyncio.sleep(self.config.finished_run_ttl)
            if self.sessions.get(session.id) is session:
                await self.destroy(session)
        task = asyncio.create_task(cleanup())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        if session.pgid is not None:
            with contextlib.suppress(OSError):
                os.killpg(session.pgid, signal.SIGKILL)

    async def _reap(self) -> None:
        period = max(0.5, min(30.0, self.config.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.status != protocol.SESSION_PENDING and now - session.last_used > self.config.idle_timeout:
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
        shutil.rmtree(self.logs_dir, ignore_errors=True)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def kill_all(self) -> None:
        """Last resort on the way out: SIGKILL every kernel process group not yet stopped."""
        for session in list(self._unstopped):
            session._kill_group()
            process = getattr(getattr(session.km, "provisioner", None), "process", None)
            if process is not None:
                with contextlib.suppress(OSError):
                    process.kill()
