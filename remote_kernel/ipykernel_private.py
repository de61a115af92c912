"""Every use of ipykernel's private internals, in one place.

ipykernel promises nothing about names with a leading underscore, nor about what setting a
trait to an unusual value does inside it; ``pyproject.toml`` therefore allows only the major
version this module was checked against (``ipykernel>=7.1,<8``: 7.1 added
``Kernel._get_shell_context_var``), and CI runs the fast tests on the lowest allowed version as
well as the newest.  Code elsewhere calls the functions and subclasses the classes here, so an
ipykernel release that moves one of these internals breaks this module only.
"""

from __future__ import annotations

import select
from typing import Any

from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel
from traitlets import Float

# -- the shell request being handled ----------------------------------------------------------


def shell_request_ident(kernel: Kernel) -> Any:
    """The ZMQ routing identity of the shell request being handled (where ``input_request``
    must go): ipykernel 7 keeps it in a context variable of the shell handler."""
    return kernel._get_shell_context_var(kernel._shell_parent_ident)


def iopub_topic(kernel: Kernel, msg_type: str) -> bytes:
    """The IOPub topic ipykernel sends a message of ``msg_type`` with (``kernel.<id>.<type>``)."""
    return kernel._topic(msg_type)


def set_allow_stdin(kernel: Kernel, allowed: bool) -> None:
    """Whether ipykernel's own ``raw_input``/``getpass`` may send an ``input_request`` (the
    request's ``allow_stdin``, which ipykernel keeps in a private attribute)."""
    kernel._allow_stdin = bool(allowed)


# -- kernels -----------------------------------------------------------------------------------


class NoReplySleep(Kernel):
    """Mixin for a ``Kernel`` subclass (put it first among the bases): no sleep before every
    ``execute_reply``.  ipykernel sleeps 0.5 ms there so that output printed in the kernel
    process reaches IOPub before the reply; a kernel whose outputs are all sent before the
    cell ends, or whose only reader waits for ``idle`` anyway, only loses the time."""

    _execute_sleep = Float(0.0).tag(config=True)


class IPythonKernelWithoutEcho(NoReplySleep, IPythonKernel):
    """An ``IPythonKernel`` that publishes neither ``execute_input`` nor the ``busy`` status of
    a request (its ``idle`` and every output still go out), and does not sleep before the
    reply: for an IOPub whose one subscriber publishes those two itself."""

    def _publish_execute_input(self, code, parent, execution_count) -> None:
        pass

    def _publish_status(self, status, channel, parent=None) -> None:
        if status != "busy":
            super()._publish_status(status, channel, parent)


# -- sys.stdout / sys.stderr -----------------------------------------------------------------


class CountedFlushes(OutStream):
    """An ``OutStream`` that counts the flushes its IOPub thread is in the middle of
    (``flushing``): one has taken the written text from the buffers but not yet queued its
    message, so a message queued meanwhile (a kernel's idle) would go out before that text."""

    flushing = 0

    def _flush(self) -> None:
        self.flushing += 1
        try:
            super()._flush()
        finally:
            self.flushing -= 1


def stream_is_idle(stream: OutStream) -> bool:
    """Nothing is written to ``stream`` but not yet sent, and no flush of it is under way
    (``CountedFlushes.flushing``: read after the buffers, which a flush empties after counting)."""
    with stream._buffer_lock:
        if stream._buffers or stream._flush_pending or stream._subprocess_flush_pending:
            return False
    return not getattr(stream, "flushing", 0)


def unread_fd_output(stream: OutStream) -> bool:
    """Output a child process wrote to the stream's file descriptor waits in ipykernel's pipe,
    not yet taken into the stream by its watcher thread."""
    fid = getattr(stream, "_fid", None)
    if fid is None:
        return False
    try:
        return bool(select.select([fid], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def flush_soon(stream: OutStream) -> None:
    """Have ``stream``'s IOPub thread send what was written to it, without waiting (``flush()``
    waits for the thread; ``write`` only arms a 0.2 s timer)."""
    if stream.pub_thread is not None:
        stream.pub_thread.schedule(stream._flush)


def push_out(shell_stream: Any) -> None:
    """Send the replies queued on a shell ``ZMQStream`` now (ipykernel sends them once the
    handler and the ``idle`` status are done)."""
    flush = getattr(shell_stream, "flush", None)
    if flush is not None:
        import zmq

        flush(zmq.POLLOUT)


# -- the kernel app ------------------------------------------------------------------------------


def read_shell_on_main_loop(app: IPKernelApp) -> None:
    """Call after ``IPKernelApp.init_sockets``: no shell-channel thread; ipykernel then reads
    the shell socket on the main event loop (the code path it keeps for kernels without one)."""
    app.shell_channel_thread = None
