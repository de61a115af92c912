"""One notebook cell's conversation with the remote, as a transport-free state machine.

:class:`Cell` takes events — the remote's results, the frontend's input answers, interrupts,
clock ticks, transport errors — and answers each with :class:`Action` values for its driver
(``RemoteKernel``) to carry out: publish a message, send the next body of the execute loop, ask
the frontend for input, interrupt the remote, wait, give up, finish with a reply.  It reads no
clock and does no I/O: time arrives as ``now`` (``time.monotonic()`` seconds), so every
interrupt × stdin × abandon case is a plain unit test.

The loop itself (which body comes next, which records are new) is :class:`RunState`'s; the
translation of records into Jupyter messages is ``outputs.translate``'s.  What this module owns
is the cell's policy around them:

* input: asked of the frontend when it allows stdin and nobody interrupted; otherwise the
  remote is asked to stop and its end fetched — never fed a made-up answer.  A remote that
  keeps waiting is interrupted again every second and given up on after the grace time;
* interrupts: the first asks the remote to stop, a later one within the grace time asks again,
  one after the grace time gives up waiting (so does a shutdown);
* a session that vanished before the remote answered anything is re-created and the run
  started again there (never once it answered: the code may have run in part);
* the reply: the remote's own error, or one error that says what happened (input refused,
  interrupted, timed out, session lost, a non-zero exit).

Interrupts come from another thread (the control channel, SIGINT); every method holds the
cell's lock, so the driver may call them from any thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Union

from remote_kernel import protocol
from remote_kernel.client import Done, InputWanted, Record, RunState, errors
from remote_kernel.kernel.comms import inner_message
from remote_kernel.kernel.outputs import OutputContext, StreamBuffer, make_error, translate

# Why a cell found no session before the remote answered it: the next one is made (cell re-run).
SESSION_GONE = "the remote session was gone (servers end sessions left idle, and anyone may destroy one)"
# A remote that still waits for input after we asked it to stop is asked again this often.
REINTERRUPT_INTERVAL = 1.0
# Between two polls of a run that still waits for input: it answers at once, so do not spin.
STUCK_INPUT_POLL_INTERVAL = 0.2


# -- actions: what the driver does -------------------------------------------------------------

@dataclass(frozen=True)
class Publish:
    """Send this message on iopub under the cell's parent."""

    msg_type: str
    content: dict
    metadata: dict = field(default_factory=dict)
    buffers: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Send:
    """Send this body of the execute loop and feed the answer to :meth:`Cell.on_result`
    (a failure to :meth:`Cell.on_error`).  ``first`` marks the body that starts the run."""

    body: dict
    idempotent: bool = False

    @property
    def first(self) -> bool:
        return self.body["mode"] in (protocol.MODE_QUERY, protocol.MODE_BATCH)


@dataclass(frozen=True)
class AskInput:
    """Ask the frontend for a line; feed the answer (``None`` if cancelled) to :meth:`Cell.on_input`."""

    prompt: str
    password: bool


@dataclass(frozen=True)
class InterruptRemote:
    """Ask the remote to stop the run (best effort)."""


@dataclass(frozen=True)
class CancelInput:
    """Stop waiting for the frontend's input answer."""


@dataclass(frozen=True)
class EndStream:
    """Close the run's websocket: the server interrupts a run whose connection ends."""


@dataclass(frozen=True)
class UseRest:
    """The websocket upgrade was refused before the code was sent: send this run's bodies over
    REST.  ``lasting``: the server has no websocket endpoint at all (REST from now on)."""

    lasting: bool


@dataclass(frozen=True)
class WaitUntil:
    """Wait until ``deadline`` (monotonic seconds), then call :meth:`Cell.on_tick`."""

    deadline: float


@dataclass(frozen=True)
class Abandon:
    """Stop waiting for the remote, wherever the driver blocks; then call :meth:`Cell.on_abandoned`."""


@dataclass(frozen=True)
class ForgetSession:
    """The remote session is gone (or will be): the next call makes a new one."""

    reason: str


@dataclass(frozen=True)
class RestartRun:
    """Make a new remote session, then start the run again with :meth:`Cell.restart_run`."""


@dataclass(frozen=True)
class Finish:
    """The cell is over: ``reply`` is the execute_reply content."""

    reply: dict


Action = Union[Publish, Send, AskInput, InterruptRemote, CancelInput, EndStream, UseRest, WaitUntil,
               Abandon, ForgetSession, RestartRun, Finish]


def error_of_exception(exc: BaseException) -> dict:
    """A client or configuration failure as a Jupyter error.  ``APIError`` messages already name
    the endpoint, the call, the cause and a hint (never a secret)."""
    text = str(exc)
    if isinstance(exc, errors.ConfigError) and not isinstance(exc, errors.APIError):
        text = f"remote_kernel configuration: {text}"
    return make_error(type(exc).__name__, text)


class Cell:
    """One cell: created by ``do_execute``, then :meth:`begin_run` when its code reaches the
    remote.  Every event method returns the actions to carry out, in order; the last action the
    driver meets on any path is :class:`Finish`."""

    def __init__(self, *, execution_count: int, allow_stdin: bool, silent: bool,
                 interrupt_grace: float, endpoint: str = "the remote"):
        self.execution_count = execution_count
        self.allow_stdin = allow_stdin
        self.silent = silent
        self.interrupt_grace = interrupt_grace
        self.endpoint = endpoint
        self._lock = threading.RLock()
        # interrupts (any thread)
        self.interrupted_at: float | None = None
        self.abandoned = False
        # the run (the driver's thread)
        self.state: RunState | None = None
        self.streaming = False
        self.answered = False  # the remote answered one of this run's requests
        self._run_args: tuple[str, str, dict] | None = None
        self._outputs: OutputContext | None = None
        self._buffer = StreamBuffer()
        self._error: dict | None = None  # the remote's own error output (our extensions)
        self._records_received = 0
        self._restarted = False
        self._stdin_refused = False
        self._stop_asked_at: float | None = None  # when we asked a run that waits for input to stop
        self._last_interrupt = 0.0
        self._input_stuck = False

    # -- the driver's own output ---------------------------------------------------------------

    def publish(self, msg_type: str, content: dict, *, force: bool = False) -> list[Action]:
        """A message for the notebook, unless the cell is silent or given up on (``force``: the
        final error of a cell given up on still shows)."""
        if self.silent or (self.abandoned and not force):
            return []
        return [Publish(msg_type, content)]

    def ok(self) -> list[Action]:
        return [Finish({"status": "ok", "execution_count": self.execution_count, "payload": [],
                        "user_expressions": {}})]

    def fail(self, error: dict, *, already_shown: bool = False) -> list[Action]:
        """End with an error: shown on iopub and in the reply, as headless runners need both."""
        shown = [] if already_shown else self.publish("error", error, force=True)
        return shown + [Finish({"status": "error", "execution_count": self.execution_count, **error})]

    # -- the run -----------------------------------------------------------------------------

    def begin_run(self, mode: str, code: str, options: dict, *, outputs: OutputContext,
                  streaming: bool, resumable: bool, endpoint: str | None = None) -> list[Action]:
        """Start the run: the first body to send, or the end if the cell was interrupted before
        its code reached the remote.  ``streaming``: over the websocket; ``resumable``: the
        server offers resumable runs (used over REST)."""
        with self._lock:
            if endpoint is not None:
                self.endpoint = endpoint
            if self.abandoned:
                return self.on_abandoned()
            if self.interrupted_at is not None:
                return self.fail(make_error("KeyboardInterrupt", "interrupted before the cell reached the remote"))
            self._run_args = (mode, code, options)
            self._outputs = outputs
            self.streaming = streaming
            self.state = RunState(mode=mode, code=code, options=options, resumable=resumable and not streaming)
            outputs.new_cell(self.execution_count)
            return [self._send_next()]

    def resume_run(self, run_id: str, cursor: int, *, outputs: OutputContext, endpoint: str | None = None
                   ) -> list[Action]:
        """Go on with a run another bridge started (``%remote attach``): its records from
        ``cursor`` on, over REST (resumable runs), as if this cell had started it."""
        with self._lock:
            if endpoint is not None:
                self.endpoint = endpoint
            if self.abandoned:
                return self.on_abandoned()
            self._outputs = outputs
            self.streaming = False
            self.answered = True  # it ran already: never re-run it in a new session
            self.state = RunState.resume(run_id, cursor)
            outputs.new_cell(self.execution_count)
            return [self._send_next()]

    def restart_run(self, *, outputs: OutputContext, streaming: bool, resumable: bool,
                    endpoint: str | None = None) -> list[Action]:
        """After :class:`RestartRun`: the same run, from its start, in the new session."""
        if self._run_args is None:
            raise RuntimeError("restart_run before begin_run")
        mode, code, options = self._run_args
        return self.begin_run(mode, code, options, outputs=outputs, streaming=streaming,
                              resumable=resumable, endpoint=endpoint)

    def _send_next(self) -> Send:
        return Send(self.state.request(), idempotent=self.state.idempotent)

    def on_result(self, result: Any, now: float) -> list[Action]:
        """One result of the execute loop (REST answer or websocket frame)."""
        with self._lock:
            self.answered = True
            if self.abandoned:
                return self.on_abandoned()
            actions: list[Action] = []
            next_step: list[Action] = []
            for event in self.state.handle(result):
                if isinstance(event, Record) and event.kind == "comm":
                    self._records_received += 1
                    actions += self._flush() + self._comm(event.data)
                elif isinstance(event, Record):
                    self._records_received += 1
                    for msg_type, content in self._buffer.push(translate(event.kind, event.data, self._outputs)):
                        if msg_type == "error":
                            self._error = content
                        actions += self.publish(msg_type, content)
                elif isinstance(event, InputWanted):
                    actions += self._flush()
                    next_step = self._input_wanted(event, now)
                elif isinstance(event, Done):
                    next_step = self._outcome(event)
            actions += self._flush()
            if not next_step:  # the run goes on
                next_step = [self._send_next()]
            return actions + next_step

    def _comm(self, data: Any) -> list[Action]:
        """A comm message of the inner kernel (our extensions), in order with the outputs.
        Sent for silent cells too: a widget whose state messages were dropped would go stale."""
        message = inner_message(data)
        if message is None or message.msg_type not in ("comm_open", "comm_msg", "comm_close") or self.abandoned:
            return []
        return [Publish(message.msg_type, message.content, message.metadata, message.buffers)]

    def _flush(self) -> list[Action]:
        return [action for msg_type, content in self._buffer.flush() for action in self.publish(msg_type, content)]

    def _input_wanted(self, event: InputWanted, now: float) -> list[Action]:
        if self._stop_asked_at is None:
            if self.allow_stdin and self.interrupted_at is None:
                return [AskInput(event.prompt, event.password)]
            return self._stop_waiting_run(now)
        # We asked the remote to stop and it still waits for input.
        if now - self._stop_asked_at > self.interrupt_grace:
            self._input_stuck = True
            return self._outcome()
        self.state.stop_waiting_for_input()
        if now - self._last_interrupt >= REINTERRUPT_INTERVAL:
            self._last_interrupt = now
            return [InterruptRemote(), self._send_next()]
        return [WaitUntil(now + STUCK_INPUT_POLL_INTERVAL)]

    def _stop_waiting_run(self, now: float) -> list[Action]:
        """No answer can be given (stdin not allowed, or interrupted): stop the remote run and
        fetch its end."""
        self._stdin_refused = not self.allow_stdin
        self._stop_asked_at = self._last_interrupt = now
        if self.streaming:
            # a streamed run waiting for input reads nothing but the answer: end the connection,
            # which makes the server interrupt it too
            return [InterruptRemote(), EndStream(), *self._outcome()]
        self.state.stop_waiting_for_input()
        return [InterruptRemote(), self._send_next()]

    def on_input(self, answer: str | None, now: float) -> list[Action]:
        """The frontend's answer to :class:`AskInput`; ``None`` when the question was cancelled."""
        with self._lock:
            if self.abandoned:
                return self.on_abandoned()
            if answer is None:
                return self._stop_waiting_run(now)
            self.state.reply(answer)
            return [self._send_next()]

    def on_tick(self, now: float) -> list[Action]:
        """The deadline of a :class:`WaitUntil` passed."""
        with self._lock:
            if self.abandoned:
                return self.on_abandoned()
            return [self._send_next()]

    def on_error(self, exc: BaseException) -> list[Action]:
        """Sending a body failed (the client raised)."""
        with self._lock:
            if isinstance(exc, errors.StreamUnavailable):  # refused before the code was sent
                self.streaming = False
                return [UseRest(exc.lasting), self._send_next()]
            if isinstance(exc, errors.SessionNotFound):
                if not self.answered and not self._restarted and self.state is not None:
                    # gone between cells: nothing ran, so run the cell in a new session
                    self._restarted = True
                    return [ForgetSession(SESSION_GONE), RestartRun()]
                return [ForgetSession("the remote session vanished"), *self.fail(error_of_exception(exc))]
            return self.fail(error_of_exception(exc))

    # -- interrupts and giving up (any thread) ---------------------------------------------------

    def on_interrupt(self, now: float) -> list[Action]:
        """First interrupt: ask the remote; a later one within the grace time: ask again; one
        after it: stop waiting."""
        with self._lock:
            if self.interrupted_at is None:
                self.interrupted_at = now
                return [CancelInput(), InterruptRemote()]
            if now - self.interrupted_at >= self.interrupt_grace:
                return self.on_shutdown()
            return [InterruptRemote()]

    def on_shutdown(self) -> list[Action]:
        """The kernel shuts down (or the user gave up): stop waiting for the remote."""
        with self._lock:
            self.abandoned = True
            return [CancelInput(), Abandon()]

    def on_abandoned(self) -> list[Action]:
        """The driver stopped waiting after :class:`Abandon`."""
        return self.fail(make_error(
            "KeyboardInterrupt",
            f"stopped waiting for the remote run: it did not stop within {self.interrupt_grace:g} s of the "
            f"interrupt (it may still be running on {self.endpoint}; the next cell waits behind it)"))

    # -- the reply -----------------------------------------------------------------------------

    def _outcome(self, done: Done | None = None) -> list[Action]:
        if self._error is not None:  # the remote's own error (our extensions), already shown
            return self.fail(self._error, already_shown=True)
        reply = _inner_reply(done)
        if reply is not None and self.interrupted_at is None and not self._stdin_refused:
            # our extensions: reply what the inner kernel replied, e.g. an error whose message
            # went to stderr (IPython's UsageError) shows no error output, as directly
            if reply["status"] == "error":
                return self.fail({k: reply[k] for k in ("ename", "evalue", "traceback")}, already_shown=True)
            return self.ok()
        state = self.state
        stuck = (f"; the remote ({self.endpoint}) did not stop within {self.interrupt_grace:g} s "
                 "and may still be waiting for input") if self._input_stuck else "; the remote run was interrupted"
        if self._stdin_refused:
            return self.fail(make_error(
                "StdinNotImplementedError",
                "the remote code asked for input, but this frontend does not support input requests "
                f"(e.g. nbconvert/papermill){stuck}"))
        if self._input_stuck:
            return self.fail(make_error("KeyboardInterrupt", f"interrupted while the remote waited for input{stuck}"))
        if state.status == protocol.STATUS_EXEC_TIMEOUT:
            return [ForgetSession("the remote killed the previous run for exceeding its time limit"),
                    *self.fail(make_error(
                        "RemoteTimeout", f"the remote ({self.endpoint}) killed the run: it exceeded the server's "
                        "execution time limit; split the work or ask for a longer limit"))]
        exit_code = state.exit_code
        if (exit_code == protocol.EXIT_SESSION_VANISHED and self._records_received == 0
                and self.interrupted_at is None):
            return [ForgetSession("the remote session vanished during the previous run"),
                    *self.fail(make_error(
                        "RemoteSessionLost", f"the remote session vanished during the run (exit code 130 from "
                        f"{self.endpoint}); run the cell again in a new session"))]
        if self.interrupted_at is not None:
            return self.fail(make_error("KeyboardInterrupt", "the remote run was interrupted"))
        if exit_code not in (None, 0):
            batch = state.mode == protocol.MODE_BATCH
            what = "batch run" if batch else "remote run"
            hint = " (the build failed)" if batch and exit_code == protocol.EXIT_BUILD_FAILED else ""
            return self.fail(make_error(
                "RemoteError", f"the {what} exited with code {exit_code}{hint}; its output is shown above"))
        return self.ok()


def _inner_reply(done: Done | None) -> dict | None:
    """The inner kernel's execute_reply that our extensions put in the last result, checked."""
    reply = (done.options if done is not None else {}).get("reply")
    if not isinstance(reply, dict) or reply.get("status") not in ("ok", "error", "aborted"):
        return None
    if reply["status"] != "error":
        return {"status": "ok"}
    traceback = reply.get("traceback")
    return {"status": "error", "ename": str(reply.get("ename", "")), "evalue": str(reply.get("evalue", "")),
            "traceback": [str(line) for line in traceback] if isinstance(traceback, list) else []}


__all__ = [
    "Abandon", "Action", "AskInput", "CancelInput", "Cell", "EndStream", "Finish", "ForgetSession",
    "InterruptRemote", "Publish", "RestartRun", "Send", "UseRest", "WaitUntil", "error_of_exception",
]
