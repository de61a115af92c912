"""``RemoteKernel``: an ipykernel ``Kernel`` that runs every cell on a remote session.

The kernel is ``do_*`` hooks over ipykernel's plumbing and a driver: what a cell does with the
remote's results, input, interrupts and failures is decided by its :class:`~remote_kernel.kernel.cell.Cell`
(pure); the kernel carries out the actions it returns (publish, send, ask for input, interrupt,
wait, give up) and feeds it what they bring.

Threads (docs/JUPYTER.md#threads-of-an-ipykernel-7-kernel):
* the main thread's asyncio loop serves shell requests, one at a time; ``do_execute`` runs the
  blocking execute loop right there (a worker thread would cost two thread wake-ups per cell
  and buy nothing: the next shell request waits for this one's reply either way);
* the control thread serves ``interrupt_request``/``shutdown_request`` while a cell runs, and
  carries out the cell's answer to them at once (none blocks);
* interrupts never raise in the main thread: our SIGINT handler asks the remote to stop (a
  ``KeyboardInterrupt`` inside ipykernel's ``await`` kills the kernel).  Only when the user
  gives up on a remote that does not stop (a second interrupt after the grace time, or a
  shutdown) is the main thread signalled to raise ``_Abandoned`` inside the cell: that breaks
  whatever it waits on (an HTTP answer that never comes, the session's creation, input) and the
  cell ends with a clear error while the kernel lives on;
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
import uuid
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from ipykernel import kernel_protocol_version
from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, Dict, Float, List, Unicode

from remote_kernel import __version__, protocol
from remote_kernel.client import Client, errors
from remote_kernel.ipykernel_private import NoReplySleep, iopub_topic, set_allow_stdin, shell_request_ident
from remote_kernel.kernel import directives as directives_mod
from remote_kernel.kernel.cell import (
    Abandon, AskInput, CancelInput, Cell, EndStream, Finish, ForgetSession, InterruptRemote, Publish,
    RestartRun, Send, UseRest, WaitUntil,
)
from remote_kernel.kernel.comms import (
    COMM_TYPES, WIDGET_CONTROL_TARGET, EventFollower, InnerMessage, ParentHeaders, comm_request,
)
from remote_kernel.kernel.conduit import WEBSOCKET, Conduit, execute_loop
from remote_kernel.kernel.embedded import EmbeddedServer
from remote_kernel.kernel.history import History, history_path
from remote_kernel.kernel.restart import handoff_key, take_handoff, write_handoff
from remote_kernel.kernel.language import language_info as derive_language_info
from remote_kernel.kernel.outputs import OutputContext, make_error
from remote_kernel.kernel.remote_session import RemoteSession, WaitCancelled, load_config
from remote_kernel.kernel.startup import describe as describe_startup
from remote_kernel.traitlets_private import KeepsBadConfigOut

log = logging.getLogger("remote_kernel.kernel")

QUICK_CALL_TIMEOUT = 4.0
COMM_OUTPUT_WAIT = 5.0  # seconds a comm message's reply waits for its handler's output to arrive  # complete / inspect / is_complete: an empty answer beats a stuck UI


class _Abandoned(BaseException):
    """The user gave up waiting for the remote (second interrupt, shutdown).  Raised by the
    SIGINT handler wherever the cell's loop waits; a BaseException, like KeyboardInterrupt, so
    that no library's ``except Exception`` swallows it."""


@dataclass
class _Running:
    """The driver's side of the running cell, shared by the main thread and the control thread."""

    cell: Cell
    parent: dict
    ident: Any
    conduit: Conduit | None = None
    breakable: bool = False  # the main thread is inside the cell: _Abandoned may be raised
    input_cancel: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # ends a WaitUntil early
    outputs_sent: int = 0
    outputs_waited: int = 0  # outputs_sent when the IOPub thread was last waited for


class _StartupLine:
    """One display, updated in place, that says how the remote session's start goes while a
    cell waits for it (shown only when the wait is long enough to notice)."""

    SHOW_AFTER = 2.0  # seconds: a session that starts sooner (a private server's) needs no line

    def __init__(self, kernel: "RemoteKernel", running: _Running):
        self._kernel = kernel
        self._running = running
        self._display_id: str | None = None
        self._text = ""
        self._started = time.monotonic()

    def show(self, startup) -> None:
        if self._running.cell.interrupted_at is not None:
            raise WaitCancelled()
        now = time.monotonic()
        if startup is None or now - startup.started_at < self.SHOW_AFTER:
            return
        self._started = startup.started_at
        self._publish(describe_startup(self._kernel.remote.name, self._kernel.image, startup, now))

    def done(self) -> None:
        if self._display_id is not None:
            self._publish(f"remote session {self._kernel.remote.name} ({self._kernel.image}): RUNNING after "
                          f"{time.monotonic() - self._started:.0f} s")

    def _publish(self, text: str) -> None:
        if text == self._text:
            return
        msg_type = "display_data" if self._display_id is None else "update_display_data"
        self._display_id = self._display_id or f"remote-kernel-startup-{uuid.uuid4().hex}"
        self._text = text
        self._kernel._carry_out(self._running, self._running.cell.publish(msg_type, {
            "data": {"text/plain": text}, "metadata": {}, "transient": {"display_id": self._display_id}}))


class RemoteKernel(KeepsBadConfigOut, NoReplySleep):
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
    use_extensions = Bool(True, help="Use the server's protocol extensions (lossless Jupyter outputs, resumable "
                          "runs; docs/PROTOCOL.md#our-extensions) when it offers them; False behaves as with "
                          "a classic server.").tag(config=True)
    streaming = CaselessStrEnum(
        ["auto", "websocket", "rest"], "auto",
        help="How a cell's results come back: 'websocket' (the streaming endpoint: output as the server "
             "flushes it), 'rest' (the long-poll loop: real servers hold each poll ~2 s), or 'auto': the "
             "websocket on servers without our extensions (real clusters), REST with them (the embedded "
             "server, whose REST loop is lossless, resumable and answers printed text at once).").tag(config=True)
    keep_session = Bool(False, help="Keep the remote session when this kernel shuts down (a private embedded "
                        "server ends with its kernel, so there it cannot be kept): '%remote sessions' lists it, "
                        "'%remote attach NAME' binds a later kernel to it.").tag(config=True)
    interrupt_grace = Float(3.0, help="Seconds after an interrupt before a second one abandons the wait.").tag(config=True)
    destroy_timeout = Float(5.0, help="Seconds shutdown waits for the remote session's destruction.").tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._setup_logging()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_sigint)
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="remote-kernel")
        self._running: _Running | None = None
        self._outputs = OutputContext()
        self._outputs_generation = 0
        self._streaming_refused = False  # the server answered the websocket upgrade with "no such endpoint"
        # comms (comms.py): the frontend's requests by msg_id, the between-cells event stream
        self._parents = ParentHeaders()
        self._history = History(history_path(jupyter_data_dir(), self.image))
        # (settle: what a poll delivered goes out before the next poll holds this process's GIL)
        self._events = EventFollower(self._events_target, self._publish_inner, settle=self._iopub_sent)
        self._no_comms_note_due = False
        for msg_type in COMM_TYPES:
            self.shell_handlers[msg_type] = self._comm_from_frontend
        # no endpoint (or "local") → a private embedded server in this kernel's cwd
        self.api_config, self._config_error, embedded = load_config(self)
        self.remote = RemoteSession(
            self.api_config, self.image, name_prefix=self.session_name_prefix,
            kernel_id=self._kernel_id(), resources=self.resources, environ=self.environ,
            mounts=list(self.mounts) or None, use_extensions=self.use_extensions,
            embedded=EmbeddedServer() if embedded else None, embedded_reason=embedded or "",
        )
        self._restart_note = self._follow_restart()
        if self._config_error is None:
            self.remote.start()  # kernel_info answers at once; the first cell waits for this

    def _follow_restart(self) -> str | None:
        """After a frontend's restart: go on in the session the previous process restarted in
        place, and say so (or why this one is new)."""
        key = self._handoff_key()
        note = take_handoff(jupyter_runtime_dir(), key) if key else None
        if note is None:
            return None
        if note.get("in_place") and note.get("endpoint") == self.remote.endpoint:
            self.remote.name = note["session"]
            return (f"remote_kernel: the kernel restarted; its remote kernel was restarted in the same session "
                    f"({note['session']}): variables are gone, files stay")
        if self.remote.embedded is not None:
            return ("remote_kernel: the kernel restarted with a new private server and session; files in the "
                    "working directory stay")
        return (f"remote_kernel: the kernel restarted with a new remote session (the server could not restart "
                f"{note['session']} in place): variables and the session's files are gone")

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

    def _handoff_key(self) -> str | None:
        connection_file = getattr(self.parent, "connection_file", "") or ""
        return handoff_key(connection_file) if connection_file else None

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
            where = (f"{self.remote.embedded_reason}: every cell runs locally, on {self.remote.endpoint}, "
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
        # Not super().kernel_info: it imports ipykernel.debugger (and debugpy, a large part of the kernel's
        # start; figures in bench/README.md) only to list features we do not offer.
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
        running = self._running
        if running is not None and running.cell.abandoned and running.breakable:
            raise _Abandoned()  # see _carry_out_now; only ever inside the cell's actions
        self._interrupt("SIGINT")

    # -- execute: carry out what the cell (cell.py) decides ----------------------------------------

    async def do_execute(self, code, silent, store_history=True, user_expressions=None,
                         allow_stdin=False, *, cell_meta=None, cell_id=None):
        cell = Cell(execution_count=self.execution_count, allow_stdin=bool(allow_stdin), silent=bool(silent),
                    interrupt_grace=self.interrupt_grace)
        if not code.strip():
            return self._carry_out(None, cell.ok())  # empty cells never reach the remote
        # first of all: an interrupt that comes from now on reaches this cell
        running = _Running(cell, parent=self.get_parent("shell"), ident=shell_request_ident(self))
        self._running = running
        set_allow_stdin(self, bool(allow_stdin))
        self._parents.remember(running.parent.get("header") or {})
        if store_history and not silent:
            self._history.store(self.execution_count, code)  # queued: the disk write is not the cell's
        try:
            return self._execute_cell(running, code)
        except BaseException as exc:  # noqa: BLE001 - an escaping exception means no execute_reply
            log.exception("cell failed inside the kernel")
            return self._carry_out(running, cell.fail(
                make_error(type(exc).__name__, f"internal error of remote_kernel: {exc}")))
        finally:
            self._running = None
            set_allow_stdin(self, False)
            if running.conduit is not None:
                running.conduit.close()  # before the run ended (an abandon, an error): the server interrupts it
            self._wait_iopub_sent(running)

    def _wait_iopub_sent(self, running: _Running) -> None:
        """Let the cell's outputs, queued on the IOPub thread, reach the wire before the reply
        (a stock kernel gets that from flushing sys.stdout, which ours skips when it is empty)."""
        if running.outputs_sent > running.outputs_waited:
            running.outputs_waited = running.outputs_sent
            self._iopub_sent()

    def _iopub_sent(self) -> None:
        """Wait until the IOPub thread has sent what was published so far (at most 2 s)."""
        if self.iopub_thread is not None:
            sent = threading.Event()
            self.iopub_thread.schedule(sent.set)
            sent.wait(2.0)

    def _execute_cell(self, running: _Running, code: str) -> dict:
        cell = running.cell
        try:
            running.breakable = True
            try:
                if cell.abandoned:  # given up before the signal could reach the cell
                    raise _Abandoned()
                return self._run_cell(running, code)
            finally:
                running.breakable = False
        except _Abandoned:
            return self._carry_out(running, cell.on_abandoned())

    def _run_cell(self, running: _Running, code: str) -> dict:
        cell = running.cell
        try:
            parsed = directives_mod.parse_cell(code)
            for directive in parsed.directives:
                if directive.command == "batch":  # always the whole cell
                    return self._run_batch(running, directive)
                if directive.command == "attach":  # the rest of the cell runs in the attached session
                    outcome = self._attach(running, directive.args[0])
                    if outcome["status"] != "ok" or outcome.get("resumed"):
                        outcome.pop("resumed", None)
                        return outcome
                    continue
                client = None
                # help needs no remote; info while the session starts says how far it is (no wait)
                starting = directive.command == "info" and self.remote.startup is not None
                if directive.command != "help" and not starting:
                    self._ensure_session(running)
                    client = self.remote.client()
                info = self.remote.info()
                if client is not None:
                    info["execute loop"] = self._execute_loop(client)
                info["kept at shutdown"] = self._kept_at_shutdown()
                if directive.command == "sessions" and protocol.EXT_SESSION_LIST not in self.remote.extensions:
                    raise directives_mod.DirectiveError(
                        f"{self.remote.endpoint} offers no session list (our session-list extension); a "
                        "Backend.AI manager lists sessions in its web UI and GraphQL API")
                directives_mod.run_directive(
                    directive, client, self.remote.name, info,
                    lambda text: self._carry_out(running, cell.publish("stream", {"name": "stdout", "text": text})))
            if parsed.code.strip():
                return self._run_remote(running, protocol.MODE_QUERY, parsed.code)
            return self._carry_out(running, cell.ok())
        except directives_mod.DirectiveError as exc:
            return self._carry_out(running, cell.fail(make_error("DirectiveError", str(exc))))
        except WaitCancelled:
            return self._carry_out(running, cell.fail(make_error(
                "KeyboardInterrupt", f"interrupted while the remote session was being started; it goes on "
                f"starting on {self.remote.endpoint}, and the next cell waits for it")))
        except (errors.APIError, errors.ConfigError) as exc:
            return self._carry_out(running, cell.on_error(self.remote.explain_failure(exc)))
        except OSError as exc:  # a local file of a directive
            return self._carry_out(running, cell.fail(make_error(type(exc).__name__, str(exc))))

    def _ensure_session(self, running: _Running) -> None:
        if self._config_error is not None:
            raise self._config_error
        progress = _StartupLine(self, running)
        self.remote.ensure(on_wait=progress.show)
        progress.done()
        # Where the cells run is information: a plain display (not stderr, which JupyterLab paints
        # as an error, nor stdout, which is the code's); lost remote state is a warning (stderr).
        problems, self.config_problems = self.config_problems, []
        if problems:  # once, in the first cell (the kernel started with the defaults instead)
            text = "".join(f"remote_kernel configuration: {problem}\n" for problem in problems)
            self._carry_out(running, running.cell.publish("stream", {"name": "stderr", "text": text}))
        restart_note, self._restart_note = self._restart_note, None
        if restart_note:  # the first output after a restart says how it went
            self._carry_out(running, running.cell.publish(
                "display_data", {"data": {"text/plain": restart_note}, "metadata": {}, "transient": {}}))
        start_note = self.remote.take_start_note()
        if start_note:
            self._carry_out(running, running.cell.publish(
                "display_data", {"data": {"text/plain": start_note}, "metadata": {}, "transient": {}}))
        lost_note = self.remote.take_lost_note()
        if lost_note:
            self._carry_out(running, running.cell.publish("stream", {"name": "stderr", "text": lost_note}))
        if protocol.EXT_JUPYTER_COMMS in self.remote.extensions:
            self._events.start()  # what the inner kernel says between cells
        elif self._no_comms_note_due:
            self._no_comms_note_due = False
            self._carry_out(running, running.cell.publish("display_data", {"data": {"text/plain": (
                "remote_kernel: this server offers no comm messages (our jupyter-comms extension), so "
                "widgets show as text here")}, "metadata": {}, "transient": {}}))
        if self.remote.generation != self._outputs_generation:
            self._outputs.new_session()
            self._outputs_generation = self.remote.generation

    def _attach(self, running: _Running, name: str) -> dict:
        """``%remote attach NAME``: bind this kernel to an existing session; a cell that was
        running there (a bridge that went away) streams the rest of its output into this cell."""
        cell = running.cell
        client = self.remote.client()
        info = client.get_session(name)  # SessionNotFound: the cell says so
        own = self.remote.attach(name, info)
        if own is not None and not self.keep_session:
            self.remote.destroy_other(own)  # the session this kernel had made for itself
        self._ensure_session(running)
        say = f"attached to the remote session {name} ({info.get('image', '?')}, {info.get('status', '?')})"
        run = info.get("activeRun") if isinstance(info.get("activeRun"), dict) else None
        resumable = protocol.EXT_RESUMABLE_RUNS in self.remote.extensions
        if not resumable or protocol.EXT_SESSION_LIST not in self.remote.extensions:
            say += ("; this server cannot resume a run started by another kernel: the output of a cell that "
                    "was running there when that kernel went away cannot be recovered")
        elif run and isinstance(run.get("runId"), str) and (
                run.get("state") != "finished" or int(run.get("end", 0)) > int(run.get("cursor", 0))):
            say += (f"; a cell {'was running' if run.get('state') != 'finished' else 'ran'} there: its output "
                    "from the last record the previous kernel received follows")
            self._carry_out(running, cell.publish("stream", {"name": "stdout", "text": say + "\n"}))
            if running.conduit is not None:
                running.conduit.close()
            running.conduit = Conduit(client, name, streaming=False)  # resumable runs: over REST
            reply = self._carry_out(running, cell.resume_run(run["runId"], int(run.get("cursor", 0)),
                                                             outputs=self._outputs, endpoint=self.remote.endpoint))
            return {**reply, "resumed": True}
        self._carry_out(running, cell.publish("stream", {"name": "stdout", "text": say + "\n"}))
        return {"status": "ok"}

    def _kept_at_shutdown(self) -> str:
        if not self.keep_session:
            return "no (RemoteKernel.keep_session)"
        if self.remote.embedded is not None:
            return "no (a private embedded server ends with its kernel)"
        return "yes"

    def _run_batch(self, running: _Running, directive: directives_mod.Directive) -> dict:
        self._ensure_session(running)
        filename = directive.options.get("file")
        if filename:
            self.remote.client().upload(self.remote.name, [(filename, directive.body.encode())])
        return self._run_remote(running, protocol.MODE_BATCH, "", directive.options["batch"])

    def _run_remote(self, running: _Running, mode: str, code: str, options: dict | None = None) -> dict:
        """Run code (or a batch) in the remote session through the execute loop."""
        self._ensure_session(running)
        if options is None:  # a query: with our extensions, lossless outputs and the frontend's stdin
            lossless = protocol.EXT_JUPYTER_OUTPUTS in self.remote.extensions
            options = {"outputs": "jupyter", "allowStdin": running.cell.allow_stdin} if lossless else {}
            if lossless and protocol.EXT_JUPYTER_COMMS in self.remote.extensions:
                # the inner request takes our msg_id: its messages then name our request as parent
                options.update(comms=True, msgId=running.parent["header"]["msg_id"])
        return self._carry_out(running, running.cell.begin_run(mode, code, options, **self._open_conduit(running)))

    def _open_conduit(self, running: _Running) -> dict:
        """A transport for the run in the current session; the cell's ``begin_run`` arguments."""
        if running.conduit is not None:
            running.conduit.close()
        client = self.remote.client()
        running.conduit = Conduit(client, self.remote.name, streaming=self._execute_loop(client) == WEBSOCKET)
        return {"outputs": self._outputs, "streaming": running.conduit.streaming,
                "resumable": protocol.EXT_RESUMABLE_RUNS in self.remote.extensions,
                "endpoint": self.remote.endpoint}

    def _carry_out(self, running: _Running | None, actions: list) -> dict | None:
        """Carry out the cell's actions on the main thread, feeding it what each one brings,
        until it finishes (→ the execute_reply content; ``None`` if the actions do not end it)."""
        pending = deque(actions)
        while pending:
            action = pending.popleft()
            cell = running.cell if running is not None else None
            if isinstance(action, Finish):
                return action.reply
            if isinstance(action, Publish):
                self.session.send(self.iopub_socket, action.msg_type, action.content, parent=running.parent,
                                  ident=iopub_topic(self, action.msg_type), metadata=action.metadata or None,
                                  buffers=list(action.buffers) or None)
                running.outputs_sent += 1
            elif isinstance(action, Send):
                # What this answer published goes out before the next poll: the IOPub thread
                # would otherwise wait for this thread to block in it (output lag).
                self._wait_iopub_sent(running)
                try:
                    result = running.conduit.send(action.body, action.idempotent)
                except (errors.APIError, errors.StreamUnavailable) as exc:
                    pending.extend(cell.on_error(self.remote.explain_failure(exc)))
                else:
                    pending.extend(cell.on_result(result, time.monotonic()))
            elif isinstance(action, AskInput):
                answer = self._ask_input(running, action.prompt, action.password)
                pending.extend(cell.on_input(answer, time.monotonic()))
            elif isinstance(action, InterruptRemote):
                self._remote_interrupt()
            elif isinstance(action, EndStream):
                running.conduit.close()
            elif isinstance(action, UseRest):
                self._streaming_refused = action.lasting  # no endpoint: REST from now on
                running.conduit.use_rest()
            elif isinstance(action, WaitUntil):
                running.wake.wait(max(0.0, action.deadline - time.monotonic()))
                pending.extend(cell.on_tick(time.monotonic()))
            elif isinstance(action, ForgetSession):
                self.remote.mark_lost(action.reason)
            elif isinstance(action, RestartRun):
                self._ensure_session(running)
                pending.extend(cell.restart_run(**self._open_conduit(running)))
            else:  # CancelInput, Abandon: another thread's actions (_carry_out_now)
                self._carry_out_now(running, [action])
        return None

    def _execute_loop(self, client) -> str:
        """Which execute loop the next cell uses, and why (shown by ``%remote info``)."""
        return execute_loop(self.streaming, self._streaming_refused, self.remote.extensions, client.api_version)

    def _ask_input(self, running: _Running, prompt: str, password: bool) -> str | None:
        """``input_request`` on stdin with the parent captured on the main thread; unlike
        ``Kernel.raw_input`` the wait ends (→ ``None``) when an interrupt cancels it."""
        while True:  # drop stale replies
            try:
                self.stdin_socket.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EAGAIN:
                    break
                raise
        self.session.send(self.stdin_socket, "input_request", {"prompt": prompt, "password": bool(password)},
                          running.parent, ident=running.ident)
        while True:
            if running.input_cancel.is_set() or running.cell.abandoned:
                return None
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

    # -- interrupt (the control thread, or SIGINT on the main thread) ----------------------------

    async def interrupt_request(self, stream, ident, parent):
        self._interrupt("interrupt_request")
        self.session.send(stream, "interrupt_reply", {"status": "ok"}, parent, ident=ident)

    def _interrupt(self, source: str) -> None:
        running = self._running
        log.debug("interrupt (%s) while %s", source, "a cell runs" if running else "idle")
        if running is not None:
            self._carry_out_now(running, running.cell.on_interrupt(time.monotonic()))

    def _carry_out_now(self, running: _Running, actions: list) -> None:
        """The actions of an interrupt or a shutdown, on the thread that got it; none blocks."""
        for action in actions:
            if isinstance(action, CancelInput):
                running.input_cancel.set()
                running.wake.set()
            elif isinstance(action, InterruptRemote):
                threading.Thread(target=self._remote_interrupt, name="remote-interrupt", daemon=True).start()
            elif isinstance(action, Abandon):
                # Stop waiting for the remote: signal the main thread, whose SIGINT handler raises
                # ``_Abandoned`` wherever the cell blocks (a signal interrupts its system call;
                # Python then runs the handler there).
                running.wake.set()
                if running.breakable and hasattr(signal, "pthread_kill"):
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def _remote_interrupt(self) -> None:
        try:
            self.remote.interrupt()
        except Exception as exc:  # best effort: the loop still reports what happens
            log.warning("remote interrupt failed: %s", exc)

    # -- shutdown ------------------------------------------------------------------------------

    async def do_shutdown(self, restart):
        self._events.stop()
        self._history.close(wait=False)  # inputs not written yet: now, not after the writer's delay
        running = self._running
        if running is not None:
            self._carry_out_now(running, running.cell.on_shutdown())
        # Destroying the remote session waits for its kernel to exit; this process's
        # own teardown runs meanwhile.  The thread is not a daemon: Python waits for it before
        # the process ends, so the session is gone (or destroy_timeout passed) by then.
        threading.Thread(target=self._end_remote, args=(restart,), name="remote-session-end", daemon=False).start()
        return {"status": "ok", "restart": restart}

    def _end_remote(self, restart: bool = False) -> None:
        try:
            key = self._handoff_key()
            if restart and key:  # the process that replaces this one goes on (restart.py)
                in_place = self.remote.restart_in_place(self.destroy_timeout)
                write_handoff(jupyter_runtime_dir(), key, session=self.remote.name,
                              endpoint=self.remote.endpoint, in_place=in_place)
                if in_place:
                    self.remote.keep()
                    return
            if self.keep_session and self.remote.embedded is None:
                self.remote.keep()
                log.info("remote session %s kept on %s", self.remote.name, self.remote.endpoint)
            elif not self.remote.destroy(self.destroy_timeout):
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

    # -- comms: the rest of the Jupyter conversation (comms.py) ---------------------------------

    async def _comm_from_frontend(self, stream, ident, parent) -> None:
        """comm_open / comm_msg / comm_close from the frontend: to the inner kernel, with the
        frontend's msg_id; a server without our comms extension gets none, and a comm_open is
        answered with comm_close so the frontend does not wait for a kernel-side comm."""
        header = parent["header"]
        content = parent.get("content") or {}
        self._parents.remember(header)
        forwarded = False
        # ipywidgets' frontend opens its control comm on connecting, to restore the widgets a
        # running session has: a session still being started has none, and the first cell's
        # start-up progress must not wait behind it
        control = content.get("target_name") == WIDGET_CONTROL_TARGET
        if self._comms_available(wait=not control):
            try:
                answer = self.remote.client().send_comm(self.remote.name, comm_request(
                    header, content, parent.get("metadata") or {}, parent.get("buffers")), wait=True)
                forwarded = True
                # ipykernel says idle once this returns, and JupyterLab stops routing this
                # request's outputs (an Output widget's capture) at idle: hand them on first
                if answer and isinstance(answer.get("cursor"), int):
                    self._events.wait_delivered(self.remote.name, answer["cursor"], COMM_OUTPUT_WAIT)
            except (errors.APIError, errors.ConfigError) as exc:
                log.warning("%s not delivered to the remote: %s", header["msg_type"], exc)
        if not forwarded and header["msg_type"] == "comm_open":
            self.session.send(self.iopub_socket, "comm_close", {"comm_id": content.get("comm_id"), "data": {}},
                              parent=parent, ident=iopub_topic(self, "comm_close"))
            if content.get("target_name") != WIDGET_CONTROL_TARGET:
                self._no_comms_note_due = True

    def _comms_available(self, wait: bool = True) -> bool:
        """Whether the remote session takes comm messages (``wait``: for the session to start,
        as a cell would; else a session not running yet takes none)."""
        if self._config_error is not None or not self.use_extensions or (not wait and not self.remote.ready):
            return False
        try:
            self.remote.ensure()
        except Exception as exc:  # noqa: BLE001 - the next cell reports it properly
            log.debug("no remote session for a comm message: %s", exc)
            return False
        if protocol.EXT_JUPYTER_COMMS not in self.remote.extensions:
            return False
        self._events.start()
        return True

    async def comm_info_request(self, stream, ident, parent):
        target = (parent.get("content") or {}).get("target_name")
        reply = {"status": "ok", "comms": {}}
        if self._comms_available(wait=False):  # a session not started yet has no comms
            try:
                answer = self.remote.client().comm_info(self.remote.name, target)
                if isinstance(answer.get("comms"), dict):
                    reply["comms"] = answer["comms"]
            except (errors.APIError, errors.ConfigError) as exc:
                log.warning("comm_info_request not answered by the remote: %s", exc)
        self.session.send(stream, "comm_info_reply", reply, parent, ident)

    def _events_target(self):
        """What the event follower follows: the current session, while it offers our comms."""
        if not self.remote.ready or protocol.EXT_JUPYTER_COMMS not in self.remote.extensions:
            return None
        remote = self.remote
        return (lambda: Client(remote.config)), remote.name, remote.generation

    def _publish_inner(self, message: InnerMessage) -> None:
        """A message the inner kernel sent between cells, as ours, under the request that caused it."""
        self.session.send(self.iopub_socket, message.msg_type, message.content,
                          parent=self._parents.parent_of(message.parent_id), ident=iopub_topic(self, message.msg_type),
                          metadata=message.metadata or None, buffers=list(message.buffers) or None)

    async def do_history(self, hist_access_type, output, raw, session=0, start=0, stop=None, n=None,
                         pattern=None, unique=False):
        """Answered from the history this kernel keeps (history.py), as IPython's would be."""
        if hist_access_type == "tail":
            rows = self._history.tail(n if n is not None else 10)
        elif hist_access_type == "range":
            rows = self._history.range(session, start, stop)
        elif hist_access_type == "search":
            rows = self._history.search(pattern, n, unique)
        else:
            rows = []
        # with ``output`` IPython pairs each input with its output; the bridge keeps none
        return {"status": "ok", "history": [(s, line, (src, None)) if output else (s, line, src)
                                            for s, line, src in rows]}


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
