"""Which Jupyter kernelspec runs a session's ``image``.

``python``, ``python3``, ``python:3.x`` and Backend.AI image references such as
``cr.backend.ai/stable/python:3.11-ubuntu22.04`` run the server's own Python (so the
remote_kernel package is importable in sessions); any other name runs the installed kernelspec
of that name; anything else is 404 ``image-not-found``.
"""

from __future__ import annotations

import sys

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

from remote_kernel.server.errors import APIProblem

OWN_PYTHON = "rk-own-python"


class ServerKernelSpecManager(KernelSpecManager):
    """Installed kernelspecs plus ``rk-own-python``: IPython on the server's interpreter."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == OWN_PYTHON:
            return KernelSpec(
                # Each session keeps its own history, as each container does on a real server:
                # one shared ~/.ipython history database serialises every session on its lock.
                # lean_kernel: an IPython kernel without ipykernel 7's per-request thread hops
                # and without the IOPub messages the server does not read.
                argv=[sys.executable, "-m", "remote_kernel.lean_kernel", "-f", "{connection_file}",
                      "--HistoryManager.hist_file=:memory:",
                      "--IPKernelApp.kernel_class=remote_kernel.lean_kernel.ServerIPythonKernel"],
                display_name="Python 3 (remote_kernel server)", language="python",
                interrupt_mode="signal", metadata={"debugger": False}, resource_dir="",
            )
        return super().get_kernel_spec(kernel_name)


def _base_name(image: str) -> str:
    """``cr.backend.ai/stable/python:3.11-ubuntu22.04`` → ``python``."""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].split("@", 1)[0]


def is_python(image: str) -> bool:
    base = _base_name(image).lower()
    return base in ("python", "python3") or (base.startswith("python") and base[6:].replace(".", "").isdigit())


def resolve(image: str, specs: KernelSpecManager) -> tuple[str, str]:
    """``image`` → (kernelspec name, language)."""
    if is_python(image):
        return OWN_PYTHON, "python"
    for candidate in dict.fromkeys((image, _base_name(image))):
        try:
            spec = specs.get_kernel_spec(candidate)
        except (NoSuchKernel, ValueError, OSError):
            continue
        return candidate, (spec.language or candidate).lower()
    raise APIProblem(404, "image-not-found", "Unknown image.", f"no kernel for image {image!r} on this server")
