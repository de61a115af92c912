"""ipykernel 7 without the per-request plumbing a strictly sequential kernel never needs.

Two costs sit on every request of a stock ipykernel 7 kernel (figures in bench/README.md):

* the *shell-channel thread*: every shell message is read on a separate thread and handed to
  the main thread over an inproc socket (and the reply back), so that subshells can run
  concurrently.  A kernel that offers no subshells can read the shell socket on its main loop,
  as ipykernel 6 did; ipykernel keeps that code path for exactly this case.
* four ``sys.stdout``/``sys.stderr`` flushes per execute request, each a round trip to the
  IOPub thread and back, even when nothing was written.  ``LeanOutStream`` skips the round trip
  when its buffers are empty; written output is flushed exactly as before.

``LeanKernelApp`` applies both; with ``subshells_enabled=True`` it is a stock ``IPKernelApp``.
The bridge's launcher subclasses it, and the embedded server runs its Python sessions with
``python -m remote_kernel.lean_kernel --IPKernelApp.kernel_class=...ServerIPythonKernel``: an
ordinary IPython kernel otherwise, minus the two IOPub messages per request the server never
reads.  Both kinds of process leave message dates unparsed (``jsonio``), and both end without
interpreter finalization once their exit handlers have run (``launch_then_exit_fast``).
"""

from __future__ import annotations

import _io
import atexit
import gc
import logging
import os
import sys
import time

from ipykernel.iostream import OutStream
from ipykernel.kernelapp import IPKernelApp
from traitlets import Bool, DottedObjectName

from remote_kernel import jsonio
from remote_kernel.ipykernel_private import (
    CountedFlushes, IPythonKernelWithoutEcho, flush_soon, push_out, read_shell_on_main_loop, stream_is_idle,
    unread_fd_output,
)

FD_DRAIN_WAIT = 1.0  # seconds a flush waits for the fd watcher to take in a child's output
# A stream sends what was written once this much waits, without waiting for its 0.2 s timer:
# large output then flows in even pieces, whose hops (kernel → server → bridge → frontend)
# overlap.  The writer waits for each piece to be queued: left to the IOPub thread alone, which
# seldom gets the GIL (or a core) from a writing loop, 15 MB went out as ~5 uneven pieces and a
# last one of 9 MB (15 MB cell: 0.55 of direct; waiting: 0.88-0.95, bench/README.md).
PIECE_CHARS = 1 << 20


class LeanOutStream(CountedFlushes):
    """An ``OutStream`` whose ``flush()`` returns at once when nothing waits to be sent, which
    sends its output in pieces of about ``PIECE_CHARS`` as it is written, and whose flushes a
    ``ServerIPythonKernel`` holds for a moment (``held``)."""

    held = False
    _unsent = 0  # characters written since the last flush (about: written from any thread)

    def write(self, string: str) -> int | None:
        written = super().write(string)
        self._unsent += len(string)
        if self._unsent >= PIECE_CHARS:
            self._unsent = 0
            if self.held:
                flush_soon(self)  # (another thread writes while the reply is being sent)
            else:
                super().flush()
        return written

    def flush(self) -> None:
        if self.held:
            return  # sent once the reply is out (ServerIPythonKernel)
        # A child's output (os.system) may still sit in the fd pipe: let the watcher thread take
        # it in first, or it would arrive after the cell's idle (a bounded wait for that thread).
        deadline = time.monotonic() + FD_DRAIN_WAIT
        while unread_fd_output(self) and time.monotonic() < deadline:
            time.sleep(0.001)
        if not stream_is_idle(self):
            self._unsent = 0
            super().flush()


class ServerIPythonKernel(IPythonKernelWithoutEcho):
    """The embedded server's Python kernel.  Its IOPub has one subscriber, the server, which
    reads outputs and the ``idle`` status only (the bridge publishes its own ``busy`` and
    ``execute_input`` to the notebook); sending, then decoding, the other two messages of every
    request was pure cost on both sides of the socket.  Nor does it sleep before each
    ``execute_reply`` as ipykernel does so that a frontend stopping at the reply has the outputs
    before it: the server reads outputs until ``idle``, which follows every output on the same
    socket, so the sleep only delayed every cell.

    It also sends a cell's ``execute_reply`` before the output the cell left unflushed (then
    ``idle``), where ipykernel flushes first: the server reads until ``idle`` either way, and a
    reply already in tells it that the output arriving now ends the cell, so that it answers
    the poll once, with the end, rather than the output at once and the end in another answer
    (docs/PROTOCOL.md, the execute loop)."""

    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False,
                         *, cell_meta=None, cell_id=None):
        reply = await super().do_execute(code, silent, store_history, user_expressions, allow_stdin,
                                         cell_meta=cell_meta, cell_id=cell_id)
        _hold_flushes(True)  # until the reply is out (execute_request)
        return reply

    async def execute_request(self, stream, ident, parent):
        try:
            await super().execute_request(stream, ident, parent)
            push_out(stream)  # the reply, queued on the shell stream
        finally:
            _hold_flushes(False)  # dispatch_shell flushes them next, then publishes idle


def _hold_flushes(held: bool) -> None:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, LeanOutStream):
            stream.held = held


class LeanKernelApp(IPKernelApp):
    subshells_enabled = Bool(False, help="Keep ipykernel's shell-channel thread, which subshells need "
                             "(costs two thread hops per request).").tag(config=True)
    outstream_class = DottedObjectName("remote_kernel.lean_kernel.LeanOutStream",
                                       help="The class of sys.stdout/sys.stderr in the kernel.").tag(config=True)

    def init_sockets(self) -> None:
        super().init_sockets()
        if not self.subshells_enabled:
            read_shell_on_main_loop(self)

    def initialize(self, argv=None) -> None:
        jsonio.keep_message_dates_as_strings()  # a kernel process is wholly ours
        super().initialize(argv)
        # traitlets leaves the logger at DEBUG and filters in the handler, so every debug call
        # on the request path (three per request) still builds a LogRecord.
        self.log.setLevel(self.log_level)


def launch_then_exit_fast(app_class: type[IPKernelApp], flush_open_files: bool, **kwargs) -> None:
    """Run a kernel app; once it has ended normally and every exit handler has run, end the
    process without interpreter finalization.

    Finalization (tearing down every module and object of an ipykernel/IPython process) is a
    large part of each kernel's exit (figures in bench/README.md), and the embedded server's
    DELETE, hence a notebook's shutdown, waits for that exit.  What user code can rely on still
    happens: Python joins non-daemon threads and runs the exit handlers first (IPython's clears
    the user namespace and collects it, so its objects' ``__del__`` and file closes run;
    ``atexit`` and ``weakref.finalize`` callbacks of the user run); ``flush_open_files`` then
    flushes every file object still open (a module-level log file, say).  Python never promised
    ``__del__`` for objects alive at exit.  After an error the process finalizes as usual and
    keeps its exit status.
    """
    ended: list = []
    # Registered before the app registers anything, so it runs after all of their handlers.
    # (The only earlier ones are flags of zmq and jupyter_client, and logging's flush, done here.)
    atexit.register(_exit_without_finalization, ended, flush_open_files)
    app_class.launch_instance(**kwargs)
    ended.append(True)


def _exit_without_finalization(ended: list, flush_open_files: bool) -> None:
    if not ended:
        return
    logging.shutdown()
    streams = [sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__]
    if flush_open_files:
        # _io._IOBase: the C base of every io class, checked in C (checking every object against
        # the io.IOBase ABC is far slower).  Not ipykernel's own streams: their IOPub thread and
        # frontend are gone.
        streams += [obj for obj in gc.get_objects() if isinstance(obj, _io._IOBase) and not isinstance(obj, OutStream)]
    for stream in streams:
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:  # noqa: BLE001 - a broken stream has nothing left to flush
            pass
    os._exit(0)


def main() -> None:
    launch_then_exit_fast(LeanKernelApp, flush_open_files=True)


if __name__ == "__main__":
    main()
