"""``ProgramEngine``: a session whose queries run as programs, for a language without a Jupyter
kernel on this machine (programs.py says which, and how): each query's code is written to a
file of the engine's own, compiled if the language compiles, and run in the session's folder
(docs/PROTOCOL.md#programs-on-the-embedded-server).

It reports to a run's ``inner_kernel.Listener`` as an inner kernel does: output as ``stream``
messages the moment a pipe delivers it, an ``input_request`` when the program blocks reading
its input, then the reply (with the program's exit code) and the idle status.  So ``RunWorker``
drives both kinds of session alike.

Input: the program's standard input is a terminal (raw mode: no echo, no line editing) whose
other end the engine holds; stdout and stderr are pipes.  A terminal rather than a pipe because
programs treat it as interactive: C's stdio flushes a prompt before reading it, and Node.js lets
a program end once its ``readline`` is closed.  Whether the program waits for input is read from
``/proc`` (stdin_wait.py), polled while it runs; the answer goes to the terminal with a newline.
A run that does not allow input gets ``/dev/null`` (end of file) instead.

An interrupt sends SIGINT to the program's process group, then SIGKILL if it is still running
``INTERRUPT_GRACE`` seconds later (Lua blocked in ``io.read`` only sees SIGINT once a line comes).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import pty
import signal
import time
import tty
import uuid
from collections import deque
from typing import Callable

from remote_kernel.server import programs
from remote_kernel.server.batch import exit_code_of
from remote_kernel.server.comms import EventLog
from remote_kernel.server.errors import bad_params
from remote_kernel.server.inner_kernel import SHELL_TIMEOUT, Listener
from remote_kernel.server.stdin_wait import Blocked, StdinWatch
from remote_kernel.server.tasks import cancel_all

INTERRUPT_GRACE = 2.0  # seconds between SIGINT and SIGKILL
POLL_FIRST = 0.01  # seconds between checks whether the program waits for input: at first,
POLL_LAST = 0.1  # growing to this while it does not (a check reads a few /proc files per thread)
STDERR_TAIL = 8192  # characters of standard error kept for the reply's message
READ_CHUNK = 65536

Emit = Callable[[str, dict], None]


class _Pump:
    """One output pipe of a program, read from the event loop as the program writes."""

    def __init__(self, fd: int, name: str, emit: Emit, tail: deque | None = None):
        self._fd = fd
        self._name = name
        self._emit = emit
        self._tail = tail
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._open = True
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._read, 1)

    def _read(self, max_chunks: int | None) -> None:
        """Up to ``max_chunks`` reads (None: until the pipe is empty): one per wake-up, so that
        a program printing without pause cannot starve the event loop."""
        count = 0
        while self._open and (max_chunks is None or count < max_chunks):
            count += 1
            try:
                chunk = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            self._deliver(self._decoder.decode(chunk, final=not chunk))
            if not chunk:
                self._close()

    def _deliver(self, text: str) -> None:
        if not text:
            return
        self._emit("stream", {"name": self._name, "text": text})
        if self._tail is not None:
            self._tail.append(text)
            while sum(len(piece) for piece in self._tail) > STDERR_TAIL and len(self._tail) > 1:
                self._tail.popleft()

    def drain(self) -> None:
        """Everything written so far (the program's prompt, before it is asked for input)."""
        self._read(None)

    def finish(self) -> None:
        self.drain()
        self._close()

    def _close(self) -> None:
        if self._open:
            self._open = False
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)


class ProgramEngine:
    def __init__(self, program: programs.Program, files_prefix: str, log: logging.LoggerAdapter):
        """``files_prefix``: the engine's folder (each query's source and binary) is this + ``.program``."""
        self.program = program
        self._scratch = files_prefix + ".program"
        self._log = log
        self._cwd = ""
        self._env: dict = {}
        self._tool = ""
        self._state = "new"  # new, running, stopped
        self._listeners: dict[str, Listener] = {}
        self._query: asyncio.Task | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._interrupted = False
        # input
        self._stdin: int | None = None  # the engine's end of the program's terminal
        self._unwritten = bytearray()  # an answer longer than the terminal takes at once
        self._waiting: Blocked | None = None  # the block reported as waiting for input
        self._answered: Blocked | None = None  # the block the last answer went to
        self._poke = asyncio.Event()  # an answer came: check again soon
        self._history: deque[str] = deque(maxlen=200)  # what ran (the session's logs)
        # our jupyter-comms event stream: a program says nothing outside its query (its polls
        # just wait), and takes no comm messages (send_shell)
        self.events = EventLog()

    # -- lifecycle (inner_kernel.InnerKernel's) -----------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running program's process id, if one runs."""
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        return self._state == "running"

    def exit_code(self) -> int | None:
        return None  # nothing to die: each query is a process of its own

    async def is_alive(self) -> bool:
        return self.running()

    async def start(self, cwd: str, env: dict) -> None:
        tool = self.program.find_tool(env.get("PATH"))
        if tool is None:
            raise RuntimeError(self.program.missing(self.program.image))
        self._cwd, self._env, self._tool = cwd, env, tool
        os.makedirs(self._scratch, mode=0o700, exist_ok=True)
        if self.program.compiled:
            with open(os.path.join(self._scratch, programs.LINE_BUFFERED_C), "w", encoding="utf-8") as handle:
                handle.write(programs.LINE_BUFFERED_SOURCE)
        self._state = "running"
        self._note(f"{self.program.display} programs with {tool}")

    async def stop(self, grace: float = 0.0, interrupt_first: bool = False) -> None:
        """Kill whatever runs and forget the engine's files; ``grace``/``interrupt_first`` (an
        inner kernel's shutdown) mean nothing to a program nobody waits for."""
        self._state = "stopped"
        self.events.close()
        await self._end_query()
        with contextlib.suppress(OSError):
            for name in os.listdir(self._scratch):
                os.unlink(os.path.join(self._scratch, name))
            os.rmdir(self._scratch)

    async def restart(self, cwd: str) -> None:
        await self._end_query()
        self._cwd = cwd

    async def _end_query(self) -> None:
        self.kill()
        if self._query is not None:
            await cancel_all([self._query])
            self._query = None

    def kill_group(self) -> None:
        self._signal(signal.SIGKILL)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int, process: asyncio.subprocess.Process | None = None) -> None:
        process = process or self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signum)  # its own session: the group is the program's

    async def interrupt(self) -> None:
        process = self._process
        if self._query is None or self._query.done():
            return
        self._interrupted = True
        if process is not None:
            self._signal(signal.SIGINT, process)
            asyncio.get_running_loop().call_later(INTERRUPT_GRACE, self._signal, signal.SIGKILL, process)

    def read_log(self, limit: int) -> str:
        return "".join(line + "\n" for line in self._history)[-limit:]

    def _note(self, line: str) -> None:
        self._history.append(time.strftime("%H:%M:%S ") + line)

    async def request(self, kind: str, timeout: float = SHELL_TIMEOUT, **kwargs) -> dict | None:
        """A program has no completion, inspection or comms: kernel_info and comm_info answer
        (empty), the rest gets no answer (the handlers' empty replies)."""
        if kind == "kernel_info":
            return {"status": "ok", "implementation": "remote-kernel-program",
                    "language_info": {"name": self.program.language, "file_extension": self.program.extension}}
        if kind == "comm_info":
            return {"status": "ok", "comms": {}}
        return None

    def send_shell(self, msg_type: str, content: dict, metadata: dict | None = None, buffers=(),
                   msg_id: str | None = None) -> str:
        raise bad_params(f"this session runs {self.program.display} programs, which take no {msg_type} messages")

    async def send_shell_until_idle(self, msg_type: str, content: dict, metadata: dict | None, buffers,
                                    msg_id: str | None, timeout: float) -> tuple[int, bool]:
        self.send_shell(msg_type, content, metadata, buffers, msg_id)  # refused, as above
        return self.events.next_seq, True

    # -- queries ----------------------------------------------------------------------------

    def execute(self, code: str, allow_stdin: bool, listener: Listener, msg_id: str | None = None) -> str:
        """Run ``code`` as a program; its messages go to ``listener`` until ``forget``."""
        msg_id = msg_id or uuid.uuid4().hex
        self._listeners[msg_id] = listener
        self._interrupted = False  # here, not in the task: an interrupt may come before it starts
        self._query = asyncio.create_task(self._run_query(msg_id, code, allow_stdin))
        return msg_id

    def forget(self, msg_id: str) -> None:
        self._listeners.pop(msg_id, None)

    def _emitter(self, msg_id: str) -> Emit:
        def emit(msg_type: str, content: dict) -> None:
            listener = self._listeners.get(msg_id)
            if listener is None:
                return
            if msg_type == "input_request":
                listener.on_input_request(content)
                return
            on_iopub = getattr(listener, "on_iopub", None)  # as InnerKernel's reader delivers
            if on_iopub is not None:
                on_iopub({"msg_type": msg_type, "content": content})
            else:
                listener.on_output(msg_type, content)
        return emit

    async def _run_query(self, msg_id: str, code: str, allow_stdin: bool) -> None:
        emit = self._emitter(msg_id)
        tail: deque[str] = deque()
        exit_code, compile_failed = 0, False
        try:
            with open(os.path.join(self._scratch, self.program.source), "w", encoding="utf-8") as handle:
                handle.write(code)
            for step in self.program.query_steps(self._tool, self._scratch, self._cwd):
                if self._interrupted:  # between the compiler and the program
                    exit_code = exit_code_of(-signal.SIGINT)
                    break
                exit_code = await self._run_step(step, emit, allow_stdin and not step.compiles, tail)
                if exit_code != 0:
                    compile_failed = step.compiles and not self._interrupted
                    break
        except OSError as exc:  # the engine's folder is gone, say
            emit("stream", {"name": "stderr", "text": f"[remote-kernel] cannot run the program: {exc}\n"})
            exit_code = 127
        reply = programs.reply(self.program, exit_code, "".join(tail), compile_failed=compile_failed,
                               interrupted=self._interrupted, tool=self._tool)
        listener = self._listeners.get(msg_id)
        if listener is not None:
            listener.on_reply(reply)
            emit("status", {"execution_state": "idle"})

    async def _run_step(self, step: programs.Step, emit: Emit, interactive: bool, tail: deque) -> int:
        terminal = pty.openpty() if interactive else None
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        pumps = [_Pump(out_read, "stdout", emit), _Pump(err_read, "stderr", emit, tail)]
        process = None
        try:
            if terminal is not None:
                tty.setraw(terminal[1])  # bytes pass as written: no echo, no line editing
                os.set_blocking(terminal[0], False)
            try:
                process = await asyncio.create_subprocess_exec(
                    *step.argv, executable=step.executable, cwd=step.cwd, env=self._env,
                    stdin=terminal[1] if terminal else asyncio.subprocess.DEVNULL,
                    stdout=out_write, stderr=err_write, start_new_session=True)
            except OSError as exc:
                emit("stream", {"name": "stderr", "text": f"cannot start {step.argv[0]}: {exc.strerror}\n"})
                return 127
            finally:
                os.close(out_write)
                os.close(err_write)
            self._process = process
            self._stdin = terminal[0] if terminal else None
            watch = StdinWatch(terminal[1]) if terminal else None
            code = await self._until_exit(process, watch, emit, pumps)
            self._note(f"{' '.join(step.argv)}: exit code {code}")
            return code
        finally:
            if process is not None:  # it, or what it left running in its group
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
            self._process = self._stdin = self._waiting = self._answered = None
            self._unwritten.clear()
            for pump in pumps:
                pump.finish()
            if terminal is not None:
                self._stop_writing(terminal[0])
                for fd in terminal:
                    os.close(fd)

    async def _until_exit(self, process: asyncio.subprocess.Process, watch: StdinWatch | None, emit: Emit,
                          pumps: list[_Pump]) -> int:
        exited = asyncio.ensure_future(process.wait())
        interval = POLL_FIRST
        if watch is not None and not watch.check_access(process.pid):
            self._log.warning("cannot read the program's system calls (/proc/%d/syscall): its runs never "
                              "report waiting for input", process.pid)
            watch = None
        try:
            while not exited.done():
                self._poke.clear()
                poked = asyncio.ensure_future(self._poke.wait())
                await asyncio.wait({exited, poked}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                poked.cancel()
                if exited.done():
                    break
                interval = POLL_FIRST if self._poke.is_set() else min(POLL_LAST, interval * 1.5)
                if watch is not None and self._waiting is None:
                    blocked = watch.blocked(process.pid)
                    if blocked is not None and blocked != self._answered:
                        for pump in pumps:
                            pump.drain()  # what it printed before it asked comes first
                        self._waiting = blocked
                        emit("input_request", {"prompt": "", "password": False})
            return exit_code_of(exited.result())
        finally:
            exited.cancel()

    def send_input(self, text: str) -> None:
        """The answer to the program's wait for input: a line on its terminal."""
        if self._stdin is None or self._waiting is None:
            return
        self._answered, self._waiting = self._waiting, None
        self._unwritten += (text + "\n").encode("utf-8")
        self._write_input()
        self._poke.set()

    def _write_input(self) -> None:
        fd = self._stdin
        if fd is None:
            return
        try:
            written = os.write(fd, self._unwritten)
        except BlockingIOError:
            written = 0
        except OSError:  # the program is gone
            self._unwritten.clear()
            written = 0
        del self._unwritten[:written]
        loop = asyncio.get_running_loop()
        if self._unwritten:  # the terminal's buffer is full: the rest when the program reads
            loop.add_writer(fd, self._write_input)
        else:
            loop.remove_writer(fd)

    def _stop_writing(self, fd: int) -> None:
        asyncio.get_running_loop().remove_writer(fd)
