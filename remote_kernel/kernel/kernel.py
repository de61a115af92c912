"""``RemoteKernel``: an ipykernel ``Kernel`` that runs every cell on a remote session.

Threads (see /work/shared/reference/JUPYTER.md):
* the main thread's asyncio loop serves shell requests, one at a time; ``do_execute`` runs the
  blocking execute loop right there.  (A worker thread the main thread waits for cost two
  thread wake-ups, ~0.5 ms of every cell on a busy machine, and bought nothing: the next shell
  request waits for this one's reply either way.)
* the control thread serves ``interrupt_request``/``shutdown_request`` while a cell runs;
* interrupts never raise in the main thread: our SIGINT handler asks the remote to stop (a
  ``KeyboardInterrupt`` inside ipykernel's ``await`` kills the kernel).  Only when the user
  gives up on a remote that does not stop (a second interrupt after the grace time, or a
  shutdown) is the main thread signalled to raise ``_Abandoned`` *inside the cell's loop*: that
  breaks whatever it waits on (an HTTP answer that never comes, the session's creation, input)
  and the cell ends with a clear error while the kernel lives on.
* completion and inspection run their HTTP calls on a small thread pool with a short timeout
  (``_quick``), so a slow remote gives an empty answer rather than a stuck UI.
"""

from __future__ import annotations

import asyncio
import codeop
import logging
import re
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq
from ipykernel._version import kernel_protocol_version
from ipykernel.kernelbase import Kernel
from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, Dict, Float, List, Unicode

from remote_kernel import __version__, protocol
from remote_kernel.client import InputWanted, Record, RunState, errors
from remote_kernel.kernel import directives as directives_mod
from remote_kernel.kernel.language import language_info as derive_language_info
from remote_kernel.kernel.outputs import OutputContext, StreamBuffer, make_error, translate
from remote_kernel.kernel.embedded import EmbeddedServer
from remote_kernel.kernel.session import RemoteSession, load_config

log = logging.getLogger("remote_kernel.kernel")

QUICK_CALL_TIMEOUT = 4.0  # complete / inspect / is_complete: an empty answer beats a stuck UI


class _Abandoned(BaseException):
    """The user gave up waiting for the remote (second interrupt, shutdown).  Raised by the
    SIGINT handler wherever the cell's loop waits; a BaseException, like KeyboardInterrupt, so
    that no library's ``except Exception`` swallows it."""


class _InputCancelled(Exception):
    """An interrupt arrived while the frontend was asked for input."""


@dataclass
class CellRun:
    """Everything the main thread and the control thread share about the running cell."""

    parent: dict
    ident: Any
    silent: bool
    allow_stdin: bool
    execution_count: int
    interrupted_at: float | None = None
    abandoned: bool = False
    input_cancel: threading.Event = field(default_factory=threading.Event)
    breakable: bool = False  # the main thread is inside the cell's loop: _Abandoned may be raised
    outputs_sent: int = 0
    remote_answered: bool = False  # the remote accepted this cell's first request


class RemoteKernel(Kernel):
    implementation = "remote_kernel"
    implementation_version = __version__

    image = Unicode("python", help="Image (environment) the remote session runs, e.g. python:3.11.").tag(config=True)
    session_name_prefix = Unicode("jupyter", help="Prefix of the remote session's name.").tag(config=True)
    resources = Dict(help="Resource request of the session, e.g. {'cpu': '1', 'mem': '1g'}.").tag(config=True)
    environ = Dict(help="Environment variables of the remote session.").tag(config=True)
    mounts = List(Unicode(), help="Virtual folders to mount into the session.").tag(config=True)
    language_name = Unicode("", help="language_info.name (default: from the image).").tag(config=True)
    language_version = Unicode("", help="language_info.version (default: from the image tag).").tag(config=True)
    codemirror_mode = AnyTrait(None, allow_none=True, help="language_info.codemirror_mode.").tag(config=True)
    file_extension = Unicode("", help="language_info.file_extension.").tag(config=True)
    mimetype = Unicode("", help="language_info.mimetype.").tag(config=True)
    pygments_lexer = Unicode("", help="language_info.pygments_lexer.").tag(config=True)
    use_extensions = Bool(True, help="Use the server's Part B extensions (lossless outputs, resumable "
                          "runs) when it offers them; False behaves as with a classic server.").tag(config=True)
    streaming = CaselessStrEnum(
        ["auto", "websocket", "rest"], "auto",
        help="How a cell's results come back: 'websocket' (the streaming endpoint: output as the server "
             "flushes it), 'rest' (the long-poll loop: real servers hold each poll ~2 s), or 'auto': the "
             "websocket on servers without our extensions (real clusters), REST with them (the embedded "
             "server, whose REST loop is lossless, resumable and answers within 10 ms).").tag(config=True)
    interrupt_grace = Float(3.0, help="Seconds after an interrupt before a second one abandons the wait.").tag(config=True)
    destroy_timeout = Float(5.0, help="Seconds shutdown waits for the remote session's destruction.").tag(config=True)
    # ipykernel sleeps 0.5 ms before every execute_reply so that output printed *in this process*
    # reaches iopub first; ours is all sent before the cell ends, so it only costs time.
    _execute_sleep = Float(0.0).tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._setup_logging()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_sigint)
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="remote-kernel")
        self._run: CellRun | None = None
        self._outputs = OutputContext()
        self._outputs_generation = 0
        self._streaming_refused = False  # the server answered the websocket upgrade with "no such endpoint"
        # no endpoint (or "local") → a private embedded server in this kernel's cwd
        self.api_config, self._config_error, embedded = load_config(self)
        self.remote = RemoteSession(
            self.api_config, self.image, name_prefix=self.session_name_prefix,
            kernel_id=self._kernel_id(), resources=self.resources, environ=self.environ,
            mounts=list(self.mounts) or None, use_extensions=self.use_extensions,
            embedded=EmbeddedServer() if embedded else None,
        )
        if self._config_error is None:
            self.remote.start()  # kernel_info answers at once; the first cell waits for this

    def _setup_logging(self) -> None:
        # Our modules log through the kernel's own handlers: the default last-resort handler
        # would write to sys.stderr, which ipykernel forwards into the user's notebook.
        ours = logging.getLogger("remote_kernel")
        if not ours.handlers:
            handlers = list(getattr(self.log, "handlers", []) or [])
            if not handlers:
                handlers = [logging.StreamHandler(sys.__stderr__)]
            for handler in handlers:
                ours.addHandler(handler)
            ours.propagate = False
            ours.setLevel(getattr(self.log, "level", logging.WARNING) or logging.WARNING)

    def _kernel_id(self) -> str | None:
        connection_file = getattr(self.parent, "connection_file", "") or ""
        found = re.search(r"kernel-([\w-]+)\.json$", connection_file)
        return found.group(1) if found else None

    # -- kernel_info -------------------------------------------------------------------------

    @property
    def language_info(self) -> dict:  # type: ignore[override]
        return derive_language_info(self.image, {
            "name": self.language_name, "version": self.language_version,
            "codemirror_mode": self.codemirror_mode, "file_extension": self.file_extension,
            "mimetype": self.mimetype, "pygments_lexer": self.pygments_lexer,
        })

    @property
    def banner(self) -> str:  # type: ignore[override]
        if self.remote.embedded is not None:
            where = (f"no remote endpoint configured: every cell runs locally, on {self.remote.endpoint}, "
                     f"in {self.remote.embedded.cwd}")
        else:
            where = f"every cell runs in a remote session of image '{self.image}' on {self.remote.endpoint}"
        return f"remote_kernel {__version__}: {where}.\nType '%remote help' for the local directives."

    @property
    def help_links(self) -> list:  # type: ignore[override]
        return [{"text": "remote_kernel directives (%remote help)", "url": "https://github.com/lablup/backend.ai"},
                {"text": "Backend.AI API", "url": "https://docs.backend.ai/"}]

    @property
    def kernel_info(self) -> dict:
        # Not super().kernel_info: it imports ipykernel.debugger (and debugpy: ~90 ms of the first
        # kernel_info, i.e. of the kernel's start) only to list features we do not offer.
        return {
            "protocol_version": kernel_protocol_version,
            "implementation": self.implementation,
            "implementation_version": self.implementation_version,
            "language_info": self.language_info,
            "banner": self.banner,
            "help_links": self.help_links,
            "supported_features": [],  # no subshells (cells must run in order), no debugger
        }

    # -- SIGINT: interrupt the remote instead of raising KeyboardInterrupt in an await -------

    # Installed once, in __init__: with no cell running, ``_interrupt`` does nothing, which is what
    # ipykernel's ignored SIGINT between requests does too; two signal.signal calls per request
    # (ipykernel's default hooks) are saved.
    def pre_handler_hook(self) -> None:
        pass

    def post_handler_hook(self) -> None:
        pass

    def _on_sigint(self, signum: int, frame: Any) -> None:
        run = self._run
        if run is not None and run.abandoned and run.breakable:
            raise _Abandoned()  # see _abandon; only ever inside the cell's loop
        self._interrupt("SIGINT")

    # -- execute -----------------------------------------------------------------------------

    async def do_execute(self, code, silent, store_history=True, user_expressions=None,
                         allow_stdin=False, *, cell_meta=None, cell_id=None):
        self._allow_stdin = bool(allow_stdin)
        if not code.strip():
            return self._ok()  # empty cells never reach the remote
        run = CellRun(
            parent=self.get_parent("shell"),
            ident=self._get_shell_context_var(self._shell_parent_ident),
            silent=bool(silent), allow_stdin=bool(allow_stdin), execution_count=self.execution_count,
        )
        self._run = run
        try:
            return self._execute_cell(run, code)
        except BaseException as exc:  # noqa: BLE001 - an escaping exception means no execute_reply
            log.exception("cell failed inside the kernel")
            return self._fail(run, make_error(type(exc).__name__, f"internal error of remote_kernel: {exc}"))
        finally:
            self._run = None
            self._allow_stdin = False
            self._wait_iopub_sent(run)

    def _wait_iopub_sent(self, run: CellRun) -> None:
        """Let the cell's outputs, queued on the IOPub thread, reach the wire before the reply
        (a stock kernel gets that from flushing sys.stdout, which ours skips when it is empty)."""
        if run.outputs_sent and self.iopub_thread is not None:
            sent = threading.Event()
            self.iopub_thread.schedule(sent.set)
            sent.wait(2.0)

    def _ok(self) -> dict:
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}

    def _fail(self, run: CellRun, error: dict, *, already_shown: bool = False) -> dict:
        """Report an error twice (iopub ``error`` + the reply) as headless runners need."""
        if not already_shown:
            self._send(run, "error", error, force=True)
        return {"status": "error", "execution_count": self.execution_count, **error}

    def _send(self, run: CellRun, msg_type: str, content: dict, *, force: bool = False) -> None:
        if run.silent or (run.abandoned and not force):
            return
        self.session.send(self.iopub_socket, msg_type, content, parent=run.parent,
                          ident=self._topic(msg_type))
        run.outputs_sent += 1

    def _stream(self, run: CellRun, name: str, text: str) -> None:
        self._send(run, "stream", {"name": name, "text": text})

    def _execute_cell(self, run: CellRun, code: str) -> dict:
        try:
            run.breakable = True
            try:
                if run.abandoned:  # given up before the signal could reach the loop
                    raise _Abandoned()
                return self._run_cell(run, code)
            finally:
                run.breakable = False
        except _Abandoned:
            return self._fail(run, make_error(
                "KeyboardInterrupt",
                f"stopped waiting for the remote run: it did not stop within {self.interrupt_grace:g} s of the "
                f"interrupt (it may still be running on {self.remote.endpoint}; the next cell waits behind it)"))

    def _run_cell(self, run: CellRun, code: str) -> dict:
        try:
            parsed = directives_mod.parse_cell(code)
            for directive in parsed.directives:
                if directive.command == "batch":
                    outcome = self._run_batch(run, directive)
                else:
                    client = None
                    if directive.command != "help":  # help is answered without the remote
                        self._ensure_session(run)
                        client = self.remote.client()
                    info = self.remote.info()
                    if client is not None:
                        info["execute loop"] = self._execute_loop(client)
                    directives_mod.run_directive(
                        directive, client, self.remote.name, info,
                        lambda text: self._stream(run, "stdout", text))
                    outcome = None
                if outcome is not None:
                    return outcome
            if parsed.code.strip():
                return self._run_query(run, parsed.code)
            return self._ok()
        except directives_mod.DirectiveError as exc:
            return self._fail(run, make_error("DirectiveError", str(exc)))
        except errors.SessionNotFound as exc:
            self.remote.mark_lost("the remote session vanished")
            return self._fail(run, self._api_error(exc))
        except (errors.APIError, errors.ConfigError) as exc:
            return self._fail(run, self._api_error(exc))
        except OSError as exc:  # a local file of a directive
            return self._fail(run, make_error(type(exc).__name__, str(exc)))

    def _api_error(self, exc: Exception) -> dict:
        # APIError messages name the endpoint, the call, the cause and a hint; never a secret.
        text = str(exc)
        if isinstance(exc, errors.ConfigError) and not isinstance(exc, errors.APIError):
            text = f"remote_kernel configuration: {text}"
        return make_error(type(exc).__name__, text)

    def _ensure_session(self, run: CellRun) -> None:
        if self._config_error is not None:
            raise self._config_error
        self.remote.ensure()
        note = (self.remote.take_start_note() or "") + (self.remote.take_lost_note() or "")
        if note:
            self._stream(run, "stderr", note)
        if self.remote.generation != self._outputs_generation:
            self._outputs.new_session()
            self._outputs_generation = self.remote.generation

    def _run_query(self, run: CellRun, code: str) -> dict:
        self._ensure_session(run)
        if run.interrupted_at is not None:  # interrupted while the session was being created
            return self._fail(run, make_error("KeyboardInterrupt", "interrupted before the cell reached the remote"))
        lossless = protocol.EXT_JUPYTER_OUTPUTS in self.remote.extensions
        options = {"outputs": "jupyter", "allowStdin": run.allow_stdin} if lossless else {}
        try:
            return self._loop(run, protocol.MODE_QUERY, code, options)
        except errors.SessionNotFound:
            if run.remote_answered:
                raise  # it vanished mid-run: the code may have run partly, never run it twice
            # The session vanished between cells: start a new one and run the cell there.
            self.remote.mark_lost("the remote session was gone")
            self._ensure_session(run)
            return self._loop(run, protocol.MODE_QUERY, code, options)

    def _run_batch(self, run: CellRun, directive: directives_mod.Directive) -> dict:
        self._ensure_session(run)
        filename = directive.options.get("file")
        if filename:
            self.remote.client().upload(self.remote.name, [(filename, directive.body.encode())])
        return self._loop(run, protocol.MODE_BATCH, "", directive.options["batch"], batch=True)

    def _loop(self, run: CellRun, mode: str, code: str, options: dict, batch: bool = False) -> dict:
        """The execute loop of PROTOCOL.md A4; returns the execute_reply content."""
        client = self.remote.client()
        name = self.remote.name
        streamed = self._stream_run(client, name)
        state = RunState(mode=mode, code=code, options=options,
                         resumable=streamed is None and protocol.EXT_RESUMABLE_RUNS in self.remote.extensions)
        self._outputs.new_cell(run.execution_count)
        buffer = StreamBuffer()
        error: dict | None = None
        records = 0
        stdin_refused = False
        stop_asked_at: float | None = None  # when we asked the remote to stop waiting for input
        last_interrupt = 0.0
        input_stuck = False
        stream_ended = False
        try:
            while not state.finished:
                if run.abandoned:
                    raise _Abandoned()
                body = state.request()
                result = None
                if streamed is not None:
                    try:
                        result = streamed.exchange(body)
                    except errors.StreamUnavailable as refusal:  # before the code was sent: REST takes it
                        self._streaming_refused = refusal.lasting  # no endpoint: REST from now on
                        streamed = None
                if result is None:
                    result = client.execute(name, body["mode"], body["code"], body["runId"], body["options"],
                                            idempotent=state.idempotent)
                run.remote_answered = True
                if run.abandoned:
                    raise _Abandoned()
                for event in state.handle(result):
                    if isinstance(event, Record):
                        records += 1
                        messages = translate(event.kind, event.data, self._outputs)
                        for msg_type, content in buffer.push(messages):
                            if msg_type == "error":
                                error = content
                            self._send(run, msg_type, content)
                    elif isinstance(event, InputWanted):
                        for msg_type, content in buffer.flush():
                            self._send(run, msg_type, content)
                        if stop_asked_at is None:
                            answer = None
                            if run.allow_stdin and run.interrupted_at is None:
                                try:
                                    answer = self._ask_input(run, event.prompt, event.password)
                                except _InputCancelled:
                                    answer = None
                            if answer is not None:
                                state.reply(answer)
                                continue
                            # No way to answer (stdin not allowed, or interrupted): stop the remote
                            # run and fetch its end.  Never feed it a made-up answer.
                            stdin_refused = not run.allow_stdin
                            stop_asked_at = time.monotonic()
                            self._remote_interrupt()
                            last_interrupt = time.monotonic()
                            if streamed is not None:
                                # a streamed run waiting for input reads nothing but the answer:
                                # end the connection, which makes the server interrupt it too
                                streamed.close()
                                stream_ended = True
                                break
                        elif time.monotonic() - stop_asked_at > self.interrupt_grace:
                            input_stuck = True  # the remote ignores the interrupt: give up waiting
                            break
                        elif time.monotonic() - last_interrupt >= 1.0:
                            self._remote_interrupt()
                            last_interrupt = time.monotonic()
                        else:
                            time.sleep(0.2)  # a waiting run answers at once: do not spin
                        _poll_instead_of_input(state)
                for msg_type, content in buffer.flush():
                    self._send(run, msg_type, content)
                if input_stuck or stream_ended:
                    break
        finally:
            if streamed is not None:
                streamed.close()  # before the run ended (an abandon, an error): the server interrupts it
        return self._outcome(run, state, error, records, stdin_refused, batch, input_stuck)

    def _stream_run(self, client, name: str):
        """A websocket run (client/stream.py) when this cell's results should stream, else None."""
        if self._execute_loop(client) != "websocket":
            return None
        from remote_kernel.client import stream  # websocket-client: imported by the cells that use it

        return stream.StreamRun(client, name)

    def _execute_loop(self, client) -> str:
        """Which execute loop the next cell uses, and why (shown by ``%remote info``)."""
        if self.streaming == "rest":
            return "REST (RemoteKernel.streaming = rest)"
        if self._streaming_refused:
            return "REST (the server refused the websocket endpoint)"
        if self.streaming == "auto" and protocol.EXT_JUPYTER_OUTPUTS in self.remote.extensions:
            return "REST (lossless and resumable with this server's extensions)"
        from remote_kernel.client.stream import streaming_supported

        if not streaming_supported(client.api_version):
            return f"REST (API {client.api_version} predates the websocket endpoint)"
        return "websocket"

    def _outcome(self, run: CellRun, state: RunState, error: dict | None, records: int,
                 stdin_refused: bool, batch: bool, input_stuck: bool = False) -> dict:
        if error is not None:  # the extension's structured error, already shown
            return self._fail(run, error, already_shown=True)
        stuck = (f"; the remote ({self.remote.endpoint}) did not stop within {self.interrupt_grace:g} s "
                 "and may still be waiting for input") if input_stuck else "; the remote run was interrupted"
        if stdin_refused:
            return self._fail(run, make_error(
                "StdinNotImplementedError",
                "the remote code asked for input, but this frontend does not support input requests "
                f"(e.g. nbconvert/papermill){stuck}"))
        if input_stuck:
            return self._fail(run, make_error("KeyboardInterrupt", f"interrupted while the remote waited for input{stuck}"))
        if state.status == protocol.STATUS_EXEC_TIMEOUT:
            self.remote.mark_lost("the remote killed the previous run for exceeding its time limit")
            return self._fail(run, make_error(
                "RemoteTimeout", f"the remote ({self.remote.endpoint}) killed the run: it exceeded the "
                "server's execution time limit; split the work or ask for a longer limit"))
        exit_code = state.exit_code
        if exit_code == protocol.EXIT_SESSION_VANISHED and records == 0 and run.interrupted_at is None:
            self.remote.mark_lost("the remote session vanished during the previous run")
            return self._fail(run, make_error(
                "RemoteSessionLost", f"the remote session vanished during the run (exit code 130 from "
                f"{self.remote.endpoint}); run the cell again in a new session"))
        if run.interrupted_at is not None:
            return self._fail(run, make_error("KeyboardInterrupt", "the remote run was interrupted"))
        if exit_code not in (None, 0):
            what = "batch run" if batch else "remote run"
            hint = " (the build failed)" if batch and exit_code == protocol.EXIT_BUILD_FAILED else ""
            return self._fail(run, make_error(
                "RemoteError", f"the {what} exited with code {exit_code}{hint}; its output is shown above"))
        return self._ok()

    def _ask_input(self, run: CellRun, prompt: str, password: bool) -> str:
        """``input_request`` on stdin with the parent captured on the main thread; unlike
        ``Kernel.raw_input`` the wait can be cancelled by an interrupt from the control thread."""
        while True:  # drop stale replies
            try:
                self.stdin_socket.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EAGAIN:
                    break
                raise
        self.session.send(self.stdin_socket, "input_request", {"prompt": prompt, "password": bool(password)},
                          run.parent, ident=run.ident)
        while True:
            if run.input_cancel.is_set() or run.abandoned:
                raise _InputCancelled()
            rlist, _, xlist = zmq.select([self.stdin_socket], [], [self.stdin_socket], 0.05)
            if rlist or xlist:
                ident, reply = self.session.recv(self.stdin_socket)
                if (ident, reply) != (None, None):
                    break
        try:
            value = reply["content"]["value"]
        except (KeyError, TypeError):
            value = ""
        return str(value)

    # -- interrupt -----------------------------------------------------------------------------

    async def interrupt_request(self, stream, ident, parent):
        self._interrupt("interrupt_request")
        self.session.send(stream, "interrupt_reply", {"status": "ok"}, parent, ident=ident)

    def _interrupt(self, source: str) -> None:
        """First interrupt: ask the remote; a later one after the grace time: stop waiting."""
        run = self._run
        log.debug("interrupt (%s) while %s", source, "a cell runs" if run else "idle")
        if run is None:
            return
        now = time.monotonic()
        if run.interrupted_at is None:
            run.interrupted_at = now
            run.input_cancel.set()
            threading.Thread(target=self._remote_interrupt, name="remote-interrupt", daemon=True).start()
        elif now - run.interrupted_at >= self.interrupt_grace:
            self._abandon(run)
        else:
            threading.Thread(target=self._remote_interrupt, name="remote-interrupt", daemon=True).start()

    def _abandon(self, run: CellRun) -> None:
        """Stop waiting for the remote: signal the main thread, whose SIGINT handler raises
        ``_Abandoned`` in the cell's loop, whatever it blocks on (a signal to the main thread
        interrupts its system call; Python then runs the handler there)."""
        run.abandoned = True
        run.input_cancel.set()
        if run.breakable and hasattr(signal, "pthread_kill"):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def _remote_interrupt(self) -> None:
        try:
            self.remote.interrupt()
        except Exception as exc:  # best effort: the loop still reports what happens
            log.warning("remote interrupt failed: %s", exc)

    # -- shutdown ------------------------------------------------------------------------------

    async def do_shutdown(self, restart):
        run = self._run
        if run is not None:
            self._abandon(run)
        # Destroying the remote session waits for its kernel to exit (~0.2 s); this process's
        # own teardown runs meanwhile.  The thread is not a daemon: Python waits for it before
        # the process ends, so the session is gone (or destroy_timeout passed) by then.
        threading.Thread(target=self._end_remote, name="remote-session-end", daemon=False).start()
        return {"status": "ok", "restart": restart}

    def _end_remote(self) -> None:
        try:
            if not self.remote.destroy(self.destroy_timeout):
                log.warning("remote session %s not destroyed within %g s", self.remote.name, self.destroy_timeout)
        except Exception as exc:
            log.warning("remote session %s not destroyed: %s", self.remote.name, exc)
        finally:
            self.remote.close()
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- completion, inspection, is_complete --------------------------------------------------------

    async def _quick(self, func, *args) -> Any:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._executor, func, *args), QUICK_CALL_TIMEOUT)

    def _lossless_ready(self) -> bool:
        return self.remote.ready and protocol.EXT_JUPYTER_OUTPUTS in self.remote.extensions

    async def do_complete(self, code, cursor_pos):
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        empty = {"status": "ok", "matches": [], "cursor_start": cursor_pos, "cursor_end": cursor_pos, "metadata": {}}
        if not self.remote.ready:
            return empty
        try:
            return await self._quick(self._complete_blocking, code, cursor_pos)
        except Exception as exc:
            log.debug("completion failed: %s", exc)
            return empty

    def _complete_blocking(self, code: str, cursor_pos: int) -> dict:
        client = self.remote.quick_client()
        if protocol.EXT_JUPYTER_OUTPUTS in self.remote.extensions:
            reply = client.complete(self.remote.name, code, {"jupyter": True, "cursor_pos": cursor_pos})
            return {"status": "ok", "matches": list(reply.get("matches") or []),
                    "cursor_start": int(reply.get("cursor_start", cursor_pos)),
                    "cursor_end": int(reply.get("cursor_end", cursor_pos)),
                    "metadata": reply.get("metadata") or {}}
        before = code[:cursor_pos]
        line_start = before.rfind("\n") + 1
        line_end = code.find("\n", cursor_pos)
        line_end = len(code) if line_end < 0 else line_end
        options = {"row": before.count("\n"), "col": cursor_pos - line_start,
                   "line": code[line_start:line_end], "post": code[cursor_pos:line_end]}
        result = client.complete(self.remote.name, before, options)
        matches = [m for m in (result.get("completions") or []) if isinstance(m, str)]
        start = completion_start(before, matches)
        return {"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": cursor_pos, "metadata": {}}

    async def do_inspect(self, code, cursor_pos, detail_level=0, omit_sections=()):
        not_found = {"status": "ok", "found": False, "data": {}, "metadata": {}}
        if not self._lossless_ready():
            return not_found
        try:
            reply = await self._quick(
                lambda: self.remote.quick_client().inspect(self.remote.name, code, cursor_pos, detail_level))
        except Exception as exc:
            log.debug("inspection failed: %s", exc)
            return not_found
        return {"status": "ok", "found": bool(reply.get("found")), "data": reply.get("data") or {},
                "metadata": reply.get("metadata") or {}}

    async def do_is_complete(self, code):
        if self.language_info["name"] == "python":
            return python_is_complete(code)
        if self._lossless_ready():
            try:
                reply = await self._quick(lambda: self.remote.quick_client().is_complete(self.remote.name, code))
                if reply.get("status") in ("complete", "incomplete", "invalid", "unknown"):
                    return {k: v for k, v in reply.items() if k in ("status", "indent")}
            except Exception as exc:
                log.debug("is_complete failed: %s", exc)
        return {"status": "unknown"}

    async def do_history(self, *args, **kwargs):
        return {"status": "ok", "history": []}


def _poll_instead_of_input(state: RunState) -> None:
    """After interrupting a run that waits for input, fetch its end with ``continue``."""
    state.waiting_input = False
    state._next = state._follow_up(protocol.MODE_CONTINUE, "")


_TOKEN_RE = re.compile(r"[\w.]*$")
_NAME_RE = re.compile(r"\w*$")


def completion_start(before: str, matches: list[str]) -> int:
    """Where the matches replace text on a classic server, which gives no positions: the dotted
    token before the cursor when every match repeats it, else its last name part."""
    token = _TOKEN_RE.search(before).group(0)
    if matches and token and all(m.startswith(token) for m in matches):
        return len(before) - len(token)
    return len(before) - len(_NAME_RE.search(before).group(0))


def python_is_complete(code: str) -> dict:
    """Python's is_complete, judged locally with the standard library like a console does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compiled = codeop.compile_command(code, "<cell>", "exec")
        except (SyntaxError, OverflowError, ValueError):
            return {"status": "invalid"}
    lines = code.rstrip("\n").split("\n")
    if compiled is None:
        last = lines[-1]
        indent = last[: len(last) - len(last.lstrip())]
        if last.rstrip().endswith(":"):
            indent += "    "
        return {"status": "incomplete", "indent": indent}
    # a compound statement whose block may go on is incomplete until a blank line ends it
    if len(lines) > 1 and lines[-1][:1] in (" ", "\t") and not code.endswith("\n\n"):
        last = lines[-1]
        return {"status": "incomplete", "indent": last[: len(last) - len(last.lstrip())]}
    return {"status": "complete"}
