"""``InnerKernel``: the local Jupyter kernel behind one session — its process and its channels.

The process is started on IPC sockets, restarted in place and halted within a bound (a
shutdown request, then SIGKILL to its whole process group).  The channels are read straight
from their ZMQ sockets; each message goes to whoever sent the request it answers: the
``Listener`` of an ``execute`` request, or the caller of ``request`` awaiting its shell reply.
IOPub messages no listener takes go to the session's event log (``comms.EventLog``, our
jupyter-comms extension), which keeps them only once a client asked for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Protocol

from jupyter_client.manager import AsyncKernelManager

from remote_kernel.server.comms import EventLog, new_msg_id
from remote_kernel.server.errors import APIProblem
from remote_kernel.server.tasks import cancel_all

SHELL_TIMEOUT = 10.0
KERNEL_GRACE = 3.0  # seconds a kernel gets to act on a shutdown request before it is killed


class Listener(Protocol):
    """Where the messages about one ``execute`` request go."""

    def on_output(self, msg_type: str, content: dict) -> None:
        """An iopub message (output, error, status)."""

    def on_reply(self, content: dict) -> None:
        """The execute_reply."""

    def on_input_request(self, content: dict) -> None:
        """The stdin channel's input_request."""

    # optional: ``on_iopub(msg) -> bool`` takes the whole message instead of ``on_output``;
    # False leaves it to the event log (a comm message the run did not ask for, late output)


class InnerKernel:
    def __init__(self, kernel_name: str, kernel_specs, files_prefix: str, start_timeout: float,
                 log: logging.LoggerAdapter):
        """``files_prefix``: the path its IPC sockets and its log file start with."""
        self._kernel_name = kernel_name
        self._kernel_specs = kernel_specs
        self._sockets_prefix = files_prefix
        self._log_path = files_prefix + ".log"  # the kernel's own stdout and stderr
        self._start_timeout = start_timeout
        self._log = log
        self._km: AsyncKernelManager | None = None
        self._kc = None
        self._pgid: int | None = None
        self._log_file = None
        self._listeners: dict[str, Listener] = {}
        self._replies: dict[str, asyncio.Future] = {}
        self._iopub_seen: dict[str, asyncio.Event] = {}
        self._idle_waiters: dict[str, asyncio.Future] = {}  # msg_id → the event cursor at its idle
        self._readers: list[asyncio.Task] = []
        self.events = EventLog()

    # -- the process -------------------------------------------------------------------------

    @property
    def _process(self):
        """The kernel's ``Popen``; None before it was launched."""
        return getattr(getattr(self._km, "provisioner", None), "process", None)

    @property
    def pid(self) -> int:
        return self._km.provisioner.pid

    def running(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    def exit_code(self) -> int | None:
        process = self._process
        return None if process is None else process.poll()

    async def is_alive(self) -> bool:
        return await self._km.is_alive()

    async def start(self, cwd: str, env: dict) -> None:
        # IPC sockets in our private directory, not TCP: ports picked then released by
        # jupyter_client race with every other kernel starting on the machine ("Address
        # already in use"), and the inner kernel is always local to the server anyway.
        self._km = AsyncKernelManager(kernel_name=self._kernel_name, transport="ipc", ip=self._sockets_prefix,
                                     kernel_spec_manager=self._kernel_specs)
        # kept open for the kernel's life: a restart launches the kernel again with it
        self._log_file = open(self._log_path, "ab")
        await self._km.start_kernel(cwd=cwd, env=env, stdout=self._log_file, stderr=self._log_file)
        self._note_process_group()
        self._kc = self._km.client()
        self._kc.start_channels()
        await self._kc.wait_for_ready(timeout=self._start_timeout)
        self._readers = [asyncio.create_task(coro) for coro in
                         (self._read_iopub(), self._read_shell(), self._read_stdin())]

    def _note_process_group(self) -> None:
        with contextlib.suppress(OSError, AttributeError, TypeError):
            self._pgid = os.getpgid(self._km.provisioner.pid)

    async def stop(self, grace: float = KERNEL_GRACE, interrupt_first: bool = False) -> None:
        """Stop reading, halt the kernel (``_halt``) and remove its files."""
        self.events.close()
        await cancel_all(self._readers)
        if self._kc is not None:
            with contextlib.suppress(Exception):
                self._kc.stop_channels()
        if self._km is not None:
            await self._halt(grace, interrupt_first=interrupt_first)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._km.cleanup_resources(), 2)
        if self._log_file is not None:
            self._log_file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log_path)

    async def _halt(self, grace: float, interrupt_first: bool = False) -> None:
        """Ask the kernel to shut down, wait at most ``grace`` s, then kill its process group
        and reap it.  (Not km.shutdown_kernel: its waits are unbounded in practice when the
        kernel is blocked, and cancelling it mid-way leaves the process running.)

        A kernel busy with a cell acts on the shutdown request only once the cell ends, so it
        is interrupted first (``interrupt_first``): a destroyed session whose cell sleeps then
        exits in a fraction of a second instead of being killed after ``grace``."""
        km = self._km
        process = self._process
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
        self.kill_group()
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
            deadline = time.monotonic() + 3
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

    def kill_group(self) -> None:
        if self._pgid is not None and self._pgid != os.getpgid(0):
            with contextlib.suppress(OSError):
                os.killpg(self._pgid, signal.SIGKILL)

    def kill(self) -> None:
        """At once, without waiting: SIGKILL to the kernel and its process group."""
        self.kill_group()
        process = self._process
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()

    async def restart(self, cwd: str) -> None:
        """A forced restart in ``cwd``; whatever the old kernel was asked goes unanswered."""
        self._listeners.clear()
        # kill the old kernel and everything it started ourselves, so that restart_kernel
        # finds it gone and only has to launch the new one
        await self._halt(grace=0)
        try:
            await asyncio.wait_for(self._km.restart_kernel(now=True, cwd=cwd), self._start_timeout)
        except Exception as exc:  # noqa: BLE001
            self._log.warning("restart failed: %s", type(exc).__name__)
            raise APIProblem(500, "kernel-restart-failed", "Kernel restart failed.") from None
        self._note_process_group()
        # (not kc.wait_for_ready: our shell reader owns the shell channel now)
        deadline = time.monotonic() + self._start_timeout
        while await self.request("kernel_info", timeout=1.0) is None:
            if time.monotonic() > deadline or not await self._km.is_alive():
                raise APIProblem(500, "kernel-restart-failed", "Kernel restart failed.",
                                 "the kernel did not come back")
        # iopub is a SUB socket that reconnects in its own time: until it has, a cell's output
        # and idle status would be lost, so wait until it carries a message of ours
        while not await self._iopub_connected(timeout=0.5):
            if time.monotonic() > deadline:
                raise APIProblem(500, "kernel-restart-failed", "Kernel restart failed.",
                                 "the kernel's output channel did not come back")

    async def _iopub_connected(self, timeout: float) -> bool:
        msg_id = self._kc.kernel_info()
        seen = self._iopub_seen[msg_id] = asyncio.Event()
        try:
            await asyncio.wait_for(seen.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._iopub_seen.pop(msg_id, None)

    async def interrupt(self) -> None:
        await self._km.interrupt_kernel()

    def read_log(self, limit: int) -> str:
        """The last ``limit`` bytes the kernel wrote to its stdout and stderr."""
        try:
            with open(self._log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - limit))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- requests ----------------------------------------------------------------------------

    def execute(self, code: str, allow_stdin: bool, listener: Listener, msg_id: str | None = None) -> str:
        """Send an execute_request (with header ``msg_id`` when given: the client's own request
        id, which every message the cell causes then names as its parent); its messages go to
        ``listener`` until ``forget``."""
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": allow_stdin, "stop_on_error": False}
        msg_id = self.send_shell("execute_request", content, msg_id=msg_id)
        self._listeners[msg_id] = listener
        return msg_id

    def send_shell(self, msg_type: str, content: dict, metadata: dict | None = None, buffers=(),
                   msg_id: str | None = None) -> str:
        """Send a shell message (header ``msg_id`` when given, else a fresh one) with binary
        ``buffers``; its msg_id."""
        session = self._kc.session
        msg = session.msg(msg_type, content, metadata=metadata)
        if msg_id:
            msg["header"]["msg_id"] = msg["msg_id"] = msg_id
        session.send(self._kc.shell_channel.socket, msg, buffers=list(buffers) or None)
        return msg["header"]["msg_id"]

    async def send_shell_until_idle(self, msg_type: str, content: dict, metadata: dict | None, buffers,
                                    msg_id: str | None, timeout: float) -> tuple[int, bool]:
        """``send_shell``, then wait until the kernel is idle again after it: by then everything
        its handler said is in ``events``.  ``(the events' next seq, whether idle came in time)``."""
        future = asyncio.get_running_loop().create_future()
        msg_id = msg_id or new_msg_id()
        self._idle_waiters[msg_id] = future
        try:
            self.send_shell(msg_type, content, metadata=metadata, buffers=buffers, msg_id=msg_id)
            try:
                return await asyncio.wait_for(future, timeout), True
            except asyncio.TimeoutError:
                return self.events.next_seq, False
        finally:
            self._idle_waiters.pop(msg_id, None)

    def forget(self, msg_id: str) -> None:
        self._listeners.pop(msg_id, None)

    def send_input(self, text: str) -> None:
        self._kc.input(text)

    async def request(self, kind: str, timeout: float = SHELL_TIMEOUT, **kwargs) -> dict | None:
        """A shell request (kernel_info, complete, inspect, is_complete) and its reply's content;
        None when it does not answer in time (it answers shell requests one at a time, so a
        running cell delays them)."""
        msg_id = getattr(self._kc, kind)(**kwargs)
        future = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            self._replies.pop(msg_id, None)

    # -- readers -----------------------------------------------------------------------------

    async def _recv(self, channel) -> dict:
        # straight from the socket: get_*_msg polls first, which costs a loop round per message
        while True:
            frames = await channel.socket.recv_multipart(copy=True)
            try:
                _idents, frames = self._kc.session.feed_identities(frames)
                return self._kc.session.deserialize(frames)
            except Exception:  # noqa: BLE001 - a malformed or unsigned message is dropped
                self._log.warning("dropped a malformed kernel message")

    async def _read_iopub(self) -> None:
        while True:
            msg = await self._recv(self._kc.iopub_channel)
            parent = msg.get("parent_header", {}).get("msg_id")
            listener = self._listeners.get(parent)
            if listener is not None:
                on_iopub = getattr(listener, "on_iopub", None)
                if on_iopub is None:
                    listener.on_output(msg.get("msg_type"), msg.get("content") or {})
                    continue
                if on_iopub(msg):
                    continue
            elif parent in self._iopub_seen:
                self._iopub_seen[parent].set()
                continue
            self.events.add(msg)
            waiter = self._idle_waiters.get(parent) if msg.get("msg_type") == "status" else None
            if waiter is not None and not waiter.done() and (msg.get("content") or {}).get("execution_state") == "idle":
                waiter.set_result(self.events.next_seq)  # iopub is ordered: its outputs are all in

    async def _read_shell(self) -> None:
        while True:
            msg = await self._recv(self._kc.shell_channel)
            parent = msg.get("parent_header", {}).get("msg_id")
            listener = self._listeners.get(parent)
            if listener is not None and msg.get("msg_type") == "execute_reply":
                listener.on_reply(msg.get("content") or {})
                continue
            future = self._replies.pop(parent, None)
            if future is not None and not future.done():
                future.set_result(msg.get("content") or {})

    async def _read_stdin(self) -> None:
        while True:
            msg = await self._recv(self._kc.stdin_channel)
            listener = self._listeners.get(msg.get("parent_header", {}).get("msg_id"))
            if listener is not None and msg.get("msg_type") == "input_request":
                listener.on_input_request(msg.get("content") or {})
