"""``python -m remote_kernel.kernel -f {connection_file} [--RemoteKernel.image=...]``.

The standard wrapper-kernel launcher (IPKernelApp with our kernel class: it installs no IPython
shell for a plain ``Kernel`` subclass; made lean by ``remote_kernel.lean_kernel``), plus defaults
from ``remote_kernel_config.py``/``.json`` in the Jupyter config path, e.g.
``c.RemoteKernel.resources = {"cpu": "2"}``.  The command line (the kernelspec's argv) still
wins over the file.
"""

from jupyter_core.paths import jupyter_config_path
from traitlets.config import Application

from remote_kernel.kernel.kernel import RemoteKernel
from remote_kernel.lean_kernel import LeanKernelApp, launch_then_exit_fast

CONFIG_FILE = "remote_kernel_config"


class RemoteKernelApp(LeanKernelApp):
    name = "remote-kernel"

    def init_pdb(self) -> None:
        """ipykernel swaps pdb for IPython's interruptible one, importing IPython's debugger
        (a noticeable part of every start; figures in bench/README.md).  No user code runs in
        this process: the stdlib pdb stays."""

    def load_config_file(self, *args, **kwargs):
        super().load_config_file(*args, **kwargs)
        # both lists are in descending priority (the user's own config dir first)
        Application.load_config_file(self, CONFIG_FILE, path=jupyter_config_path())


def main() -> None:
    # No user code runs in this process, so no file of its own needs a flush at exit.  Python
    # joins the non-daemon thread that destroys the remote session before the exit handlers.
    launch_then_exit_fast(RemoteKernelApp, flush_open_files=False, kernel_class=RemoteKernel)


if __name__ == "__main__":
    main()
