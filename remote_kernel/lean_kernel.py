"""ipykernel 7 without the per-request plumbing a strictly sequential kernel never needs.

Two costs sit on every request of a stock ipykernel 7 kernel (measured in bench/, see README):

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
reads.  Both kinds of process leave message dates unparsed (``jsonio``).
"""

from __future__ import annotations

from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from traitlets import Bool, DottedObjectName, Float

from remote_kernel import jsonio


class LeanOutStream(OutStream):
    """An ``OutStream`` whose ``flush()`` returns at once when nothing waits to be sent."""

    def flush(self) -> None:
        with self._buffer_lock:
            idle = not (self._buffers or self._flush_pending or self._subprocess_flush_pending)
        if not idle:
            super().flush()


class ServerIPythonKernel(IPythonKernel):
    """The embedded server's Python kernel.  Its IOPub has one subscriber, the server, which
    reads outputs and the ``idle`` status only (the bridge publishes its own ``busy`` and
    ``execute_input`` to the notebook); sending, then decoding, the other two messages of every
    request was pure cost on both sides of the socket."""

    # ipykernel sleeps 0.5 ms before every execute_reply so that a frontend that stops at the
    # reply has the outputs flushed just before it.  The server reads outputs until ``idle``,
    # which follows every output on the same socket, so the sleep only delayed every cell.
    _execute_sleep = Float(0.0).tag(config=True)

    def _publish_execute_input(self, code, parent, execution_count) -> None:
        pass

    def _publish_status(self, status, channel, parent=None) -> None:
        if status != "busy":
            super()._publish_status(status, channel, parent)


class LeanKernelApp(IPKernelApp):
    subshells_enabled = Bool(False, help="Keep ipykernel's shell-channel thread, which subshells need "
                             "(costs two thread hops per request).").tag(config=True)
    outstream_class = DottedObjectName("remote_kernel.lean_kernel.LeanOutStream",
                                       help="The class of sys.stdout/sys.stderr in the kernel.").tag(config=True)

    def init_sockets(self) -> None:
        super().init_sockets()
        if not self.subshells_enabled:
            self.shell_channel_thread = None  # ipykernel then reads the shell socket on the main loop

    def initialize(self, argv=None) -> None:
        jsonio.keep_message_dates_as_strings()  # a kernel process is wholly ours
        super().initialize(argv)
        # traitlets leaves the logger at DEBUG and filters in the handler, so every debug call
        # on the request path (three per request) still builds a LogRecord.
        self.log.setLevel(self.log_level)


def main() -> None:
    LeanKernelApp.launch_instance()


if __name__ == "__main__":
    main()
