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
from remote_kernel.lean_kernel import LeanKernelApp

CONFIG_FILE = "remote_kernel_config"


class RemoteKernelApp(LeanKernelApp):
    name = "remote-kernel"

    def load_config_file(self, *args, **kwargs):
        super().load_config_file(*args, **kwargs)
        # both lists are in descending priority (the user's own config dir first)
        Application.load_config_file(self, CONFIG_FILE, path=jupyter_config_path())


def main() -> None:
    RemoteKernelApp.launch_instance(kernel_class=RemoteKernel)


if __name__ == "__main__":
    main()
