"""``python -m remote_kernel.kernel -f {connection_file} [--RemoteKernel.image=...]``.

The standard wrapper-kernel launcher (IPKernelApp with our kernel class: it installs no IPython
shell for a plain ``Kernel`` subclass; made lean by ``remote_kernel.lean_kernel``), plus defaults
from ``remote_kernel_config.py``/``.json`` in the Jupyter config path, e.g.
``c.RemoteKernel.resources = {"cpu": "2"}``.  The command line (the kernelspec's argv) still
wins over the file.
"""

import atexit
import logging
import os
import sys

from jupyter_core.paths import jupyter_config_path
from traitlets.config import Application

from remote_kernel.kernel.kernel import RemoteKernel
from remote_kernel.lean_kernel import LeanKernelApp

CONFIG_FILE = "remote_kernel_config"


class RemoteKernelApp(LeanKernelApp):
    name = "remote-kernel"

    def init_pdb(self) -> None:
        """ipykernel swaps pdb for IPython's interruptible one, importing IPython's debugger
        (~30 ms of every start).  No user code runs in this process: the stdlib pdb stays."""

    def load_config_file(self, *args, **kwargs):
        super().load_config_file(*args, **kwargs)
        # both lists are in descending priority (the user's own config dir first)
        Application.load_config_file(self, CONFIG_FILE, path=jupyter_config_path())


def main() -> None:
    finished = []
    # Registered first, so it runs after every exit handler the app and kernel register later
    # (connection file cleanup, ...), and after Python joined our non-daemon threads (the
    # remote session's destruction).  Only on a normal end: an error keeps its exit status.
    atexit.register(_skip_finalization, finished)
    RemoteKernelApp.launch_instance(kernel_class=RemoteKernel)
    finished.append(True)


def _skip_finalization(finished: list) -> None:
    """End the process without interpreter finalization: collecting every object of the
    ipykernel/jupyter_client modules took ~130 ms of each kernel shutdown and restart, and this
    process runs no user code whose objects might still want ``__del__`` or a buffer flush.
    (The handlers registered before this one only flush logging, which is done here.)"""
    if not finished:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream has nothing left to flush
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
